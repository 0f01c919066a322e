//! `docker run -u user[:group]` resolution against the container's own /etc/passwd
//! and /etc/group (read after pivot_root, so the image's files are the ones used).

use crate::error::{Error, Result};

#[derive(Debug, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 || l.starts_with('#') {
            return None;
        }
        Some(PasswdEntry { name: f[0], uid: f[2].parse().ok()?, gid: f[3].parse().ok()?, home: f[5] })
    })
}

/// (name, gid, members)
fn group_entries(text: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || l.starts_with('#') {
            return None;
        }
        Some((f[0], f[2].parse().ok()?, f[3].split(',').filter(|m| !m.is_empty()).collect()))
    })
}

/// Resolve `spec` ("user", "uid", "user:group", "uid:gid") with the passwd and group
/// file contents (empty when the image has none).
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ExecUser> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let numeric_uid = user_part.parse::<u32>().ok();
    let entry = passwd_entries(passwd).find(|e| match numeric_uid {
        Some(uid) => e.uid == uid,
        None => e.name == user_part,
    });
    let mut user = match (&entry, numeric_uid) {
        (Some(e), _) => ExecUser { uid: e.uid, gid: e.gid, additional_gids: Vec::new(), home: e.home.to_string() },
        (None, Some(uid)) => ExecUser { uid, gid: 0, additional_gids: Vec::new(), home: "/".into() },
        (None, None) => {
            return Err(Error::Setup(format!("unable to find user {user_part}: no matching entries in passwd file")))
        }
    };
    match group_part.filter(|g| !g.is_empty()) {
        Some(g) => {
            user.gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => group_entries(group)
                    .find(|(name, _, _)| *name == g)
                    .map(|(_, gid, _)| gid)
                    .ok_or_else(|| Error::Setup(format!("unable to find group {g}: no matching entries in group file")))?,
            };
        }
        None => {
            // Supplementary groups come from /etc/group only when no group is given
            // explicitly (an explicit group takes precedence, as in Docker).
            if let Some(e) = &entry {
                for (_, gid, members) in group_entries(group) {
                    if members.contains(&e.name) && !user.additional_gids.contains(&gid) {
                        user.additional_gids.push(gid);
                    }
                }
            }
        }
    }
    Ok(user)
}

/// A `--group-add` entry: a number, or a name from the group file.
pub fn resolve_group(g: &str, group: &str) -> Result<u32> {
    if let Ok(gid) = g.parse::<u32>() {
        return Ok(gid);
    }
    group_entries(group)
        .find(|(name, _, _)| *name == g)
        .map(|(_, gid, _)| gid)
        .ok_or_else(|| Error::Setup(format!("unable to find group {g}: no matching entries in group file")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\napp:x:1000:1000::/srv/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:root,app\naudio:x:29:app\napp:x:1000:\n";

    #[test]
    fn names_numbers_and_groups() {
        let u = resolve("app", PASSWD, GROUP).unwrap();
        assert_eq!(u, ExecUser { uid: 1000, gid: 1000, additional_gids: vec![10, 29], home: "/srv/app".into() });
        let u = resolve("1000:wheel", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids.len()), (1000, 10, 0));
        let u = resolve("4242:77", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 77, "/"));
        let u = resolve("4242", "", "").unwrap();
        assert_eq!((u.uid, u.gid), (4242, 0));
    }

    #[test]
    fn group_add_entries() {
        assert_eq!(resolve_group("audio", GROUP).unwrap(), 29);
        assert_eq!(resolve_group("4000", GROUP).unwrap(), 4000);
        assert!(resolve_group("video", GROUP).unwrap_err().to_string().contains("unable to find group video"));
    }

    #[test]
    fn unknown_names_are_docker_errors() {
        let e = resolve("ghost", PASSWD, GROUP).unwrap_err().to_string();
        assert_eq!(e, "unable to find user ghost: no matching entries in passwd file");
        let e = resolve("app:ghosts", PASSWD, GROUP).unwrap_err().to_string();
        assert_eq!(e, "unable to find group ghosts: no matching entries in group file");
    }
}
