//! End-to-end tests of the crate: tars built with the `tar` crate's Builder,
//! unpacked into temp dirs; hostile entries must stay inside the root.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "berth-layer-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Entries: (name, type, data or link target).
fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        // Write the raw name: set_path refuses "..", which is the point here.
        let raw = name.as_bytes();
        h.as_old_mut().name[..raw.len()].copy_from_slice(raw);
        h.set_entry_type(*kind);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        if kind.is_symlink() || kind.is_hard_link() {
            h.set_link_name_literal(data).unwrap();
            h.set_size(0);
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        } else {
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn unpack_bytes(data: &[u8], dir: &Path, target: &Path) -> Result<UnpackStats> {
    let src = dir.join(format!("layer-{}", data.len()));
    fs::write(&src, data).unwrap();
    unpack_layer_path(&src, target, &UnpackOptions::default())
}

fn sha(data: &[u8]) -> String {
    let mut h = berth_digest::Sha256::new();
    h.update(data);
    h.oci_digest()
}

use tar::EntryType as T;

#[test]
fn dotdot_and_absolute_names_stay_inside() {
    let t = TempDir::new();
    let root = t.0.join("root");
    let tar = tar_of(&[
        ("../escape", T::Regular, b"1"),
        ("/abs", T::Regular, b"2"),
        ("a/../../../b", T::Regular, b"3"),
    ]);
    let stats = unpack_bytes(&gzip(&tar), &t.0, &root).unwrap();
    assert_eq!(stats.entries, 3);
    assert_eq!(stats.diff_id, sha(&tar));
    assert_eq!(fs::read(root.join("escape")).unwrap(), b"1");
    assert_eq!(fs::read(root.join("abs")).unwrap(), b"2");
    assert_eq!(fs::read(root.join("b")).unwrap(), b"3");
    assert!(!t.0.join("escape").exists() && !t.0.join("b").exists());
}

#[test]
fn writes_through_symlinks_resolve_inside_the_root() {
    let t = TempDir::new();
    let outside = t.0.join("outside");
    fs::create_dir(&outside).unwrap();
    let root = t.0.join("root");
    let target = outside.to_str().unwrap().as_bytes().to_vec();
    let inner = format!("{}/", outside.to_str().unwrap().trim_start_matches('/'));
    let tar = tar_of(&[
        (&inner, T::Directory, b""),
        ("link", T::Symlink, &target),
        ("up", T::Symlink, b"../../.."),
        ("link/f", T::Regular, b"confined"),
        ("up/g", T::Regular, b"at root"),
    ]);
    unpack_bytes(&tar, &t.0, &root).unwrap();
    assert!(!outside.join("f").exists());
    assert_eq!(fs::read(root.join(&inner).join("f")).unwrap(), b"confined");
    assert_eq!(fs::read(root.join("g")).unwrap(), b"at root");
}

#[test]
fn dangling_symlink_parent_is_refused_with_the_entry_name() {
    let t = TempDir::new();
    let tar = tar_of(&[("etc", T::Symlink, b"/etc"), ("etc/passwd", T::Regular, b"x")]);
    let err = unpack_bytes(&tar, &t.0, &t.0.join("root")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("tar entry \"etc/passwd\": parent directory \"etc\""), "{msg}");
}

#[test]
fn hard_links_must_resolve_inside_the_root() {
    let t = TempDir::new();
    let tar = tar_of(&[("shadow", T::Link, b"/etc/shadow")]);
    let err = unpack_bytes(&tar, &t.0, &t.0.join("r1")).unwrap_err();
    assert!(err.to_string().contains("tar entry \"shadow\": hard link target \"/etc/shadow\" not found"), "{err}");
    assert!(!t.0.join("r1/shadow").exists());

    let tar = tar_of(&[("real", T::Regular, b"data"), ("sub/alias", T::Link, b"../../real")]);
    unpack_bytes(&tar, &t.0, &t.0.join("r2")).unwrap();
    let a = fs::metadata(t.0.join("r2/real")).unwrap();
    let b = fs::metadata(t.0.join("r2/sub/alias")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
}

#[test]
fn replacement_rules() {
    let t = TempDir::new();
    let root = t.0.join("root");
    let tar = tar_of(&[
        ("d/", T::Directory, b""),
        ("d/keep", T::Regular, b"k"),
        ("d/", T::Directory, b""),
        ("f", T::Regular, b"old"),
        ("f", T::Symlink, b"d"),
        ("x/", T::Directory, b""),
        ("x/y", T::Regular, b""),
        ("x", T::Regular, b"file now"),
    ]);
    unpack_bytes(&tar, &t.0, &root).unwrap();
    assert_eq!(fs::read(root.join("d/keep")).unwrap(), b"k");
    assert_eq!(fs::read_link(root.join("f")).unwrap(), Path::new("d"));
    assert_eq!(fs::read(root.join("x")).unwrap(), b"file now");
}

#[test]
fn whiteouts_take_the_overlayfs_form() {
    if !is_root() {
        return; // mknod and trusted.* xattrs need root
    }
    let t = TempDir::new();
    let root = t.0.join("root");
    let tar = tar_of(&[
        ("d/", T::Directory, b""),
        ("d/.wh..wh..opq", T::Regular, b""),
        (".wh.gone", T::Regular, b""),
        (".wh..wh.aufs", T::Regular, b""), // AUFS metadata: skipped
    ]);
    unpack_bytes(&tar, &t.0, &root).unwrap();
    assert_eq!(fs::read_dir(&root).unwrap().count(), 2);
    let st = rustix::fs::lstat(root.join("gone")).unwrap();
    assert_eq!(rustix::fs::FileType::from_raw_mode(st.st_mode), rustix::fs::FileType::CharacterDevice);
    assert_eq!(st.st_rdev, 0);
    let mut buf = [0u8; 4];
    let n = rustix::fs::getxattr(root.join("d"), "trusted.overlay.opaque", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"y");
    assert!(!root.join("d/.wh..wh..opq").exists());
}

#[test]
fn truncated_and_corrupt_streams_are_errors() {
    let t = TempDir::new();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    let gz = gzip(&tar_of(&[("f", T::Regular, &data)]));
    let err = unpack_bytes(&gz[..gz.len() - 3], &t.0, &t.0.join("r")).unwrap_err();
    assert!(matches!(err, Error::Stream { format: "gzip", .. }), "{err}");

    let zst = zstd::encode_all(&tar_of(&[("f", T::Regular, &data)])[..], 3).unwrap();
    let err = unpack_bytes(&zst[..zst.len() / 2], &t.0, &t.0.join("r2")).unwrap_err();
    assert!(matches!(err, Error::Stream { format: "zstd", .. }), "{err}");
}

#[test]
fn digests_are_checked() {
    let t = TempDir::new();
    let tar = tar_of(&[("f", T::Regular, b"x")]);
    let gz = gzip(&tar);
    let src = t.0.join("l.tgz");
    fs::write(&src, &gz).unwrap();
    let ok = UnpackOptions { expected_digest: Some(sha(&gz)), expected_diff_id: Some(sha(&tar)), ..Default::default() };
    let stats = unpack_layer_path(&src, &t.0.join("ok"), &ok).unwrap();
    assert_eq!((stats.compression, stats.compressed_size), (Compression::Gzip, gz.len() as u64));
    let bad = UnpackOptions { expected_diff_id: Some(sha(b"other")), ..Default::default() };
    let err = unpack_layer_path(&src, &t.0.join("bad"), &bad).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { what: "layer diff_id", .. }));
    let malformed = UnpackOptions { expected_digest: Some("sha256:xyz".into()), ..Default::default() };
    assert!(matches!(unpack_layer_path(&src, &t.0.join("m"), &malformed), Err(Error::InvalidArgument(_))));
    assert!(!t.0.join("m").exists());
    assert_eq!(stats.digest, Some(sha(&gz)));

    // A caller that hashes the blob itself: no digest, the diffID still checked.
    let unhashed = UnpackOptions { skip_source_digest: true, expected_diff_id: Some(sha(&tar)), ..Default::default() };
    let stats = unpack_layer_path(&src, &t.0.join("unhashed"), &unhashed).unwrap();
    assert_eq!((stats.digest, stats.diff_id, stats.compressed_size), (None, sha(&tar), gz.len() as u64));
    assert_eq!(fs::read(t.0.join("unhashed/f")).unwrap(), b"x");
    let bad = UnpackOptions { skip_source_digest: true, expected_diff_id: Some(sha(b"other")), ..Default::default() };
    let err = unpack_layer_path(&src, &t.0.join("unhashed-bad"), &bad).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { what: "layer diff_id", .. }));
    let both = UnpackOptions { skip_source_digest: true, expected_digest: Some(sha(&gz)), ..Default::default() };
    assert!(matches!(unpack_layer_path(&src, &t.0.join("both"), &both), Err(Error::InvalidArgument(_))));
    assert!(!t.0.join("both").exists());
}

#[test]
fn pack_then_unpack_round_trips_and_is_reproducible() {
    let t = TempDir::new();
    let src = t.0.join("src");
    fs::create_dir_all(src.join("dir/sub")).unwrap();
    fs::write(src.join("dir/file"), b"hello").unwrap();
    fs::set_permissions(src.join("dir/file"), fs::Permissions::from_mode(0o4750)).unwrap();
    fs::hard_link(src.join("dir/file"), src.join("dir/sub/link")).unwrap();
    std::os::unix::fs::symlink("../file", src.join("dir/sub/sym")).unwrap();
    let long = "l".repeat(120);
    fs::write(src.join("dir").join(&long), b"long name").unwrap();

    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let opts = PackOptions { compression, ..Default::default() };
        let a = pack_layer(&src, &t.0.join("a"), &opts).unwrap();
        let b = pack_layer(&src, &t.0.join("b"), &opts).unwrap();
        assert_eq!(a, b);
        assert_eq!(fs::read(t.0.join("a")).unwrap(), fs::read(t.0.join("b")).unwrap());
        assert_eq!(a.size, fs::metadata(t.0.join("a")).unwrap().len());
        let dst = t.0.join(format!("dst-{}", compression.name()));
        let u = unpack_layer_path(&t.0.join("a"), &dst, &UnpackOptions::default()).unwrap();
        assert_eq!((u.diff_id, u.digest, u.compression), (a.diff_id.clone(), Some(a.digest.clone()), compression));
        assert_eq!(fs::read(dst.join("dir/file")).unwrap(), b"hello");
        assert_eq!(fs::metadata(dst.join("dir/file")).unwrap().mode() & 0o7777, 0o4750);
        assert_eq!(fs::metadata(dst.join("dir/sub/link")).unwrap().ino(), fs::metadata(dst.join("dir/file")).unwrap().ino());
        assert_eq!(fs::read_link(dst.join("dir/sub/sym")).unwrap(), Path::new("../file"));
        assert_eq!(fs::read(dst.join("dir").join(&long)).unwrap(), b"long name");
    }
}

#[test]
fn unpack_layers_keeps_job_order() {
    let t = TempDir::new();
    let mut jobs = Vec::new();
    for i in 0..4 {
        let body = vec![b'a' + i as u8; 1000 * (4 - i)];
        let p = t.0.join(format!("l{i}"));
        fs::write(&p, gzip(&tar_of(&[("f", T::Regular, &body)]))).unwrap();
        jobs.push((Source::Path(p), t.0.join(format!("r{i}")), UnpackOptions::default()));
    }
    jobs.push((Source::Path(t.0.join("missing")), t.0.join("rm"), UnpackOptions::default()));
    let results = unpack_layers(jobs, 2);
    for (i, r) in results.iter().take(4).enumerate() {
        assert_eq!(r.as_ref().unwrap().size, 1000 * (4 - i as u64));
    }
    assert!(results[4].is_err());
}

/// A path's xattrs of the namespaces a layer can carry, sorted: " name=value...".
fn xattrs_of(p: &Path) -> String {
    let mut names = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(p, &mut names).unwrap_or(0);
    let mut out: Vec<String> = names[..n]
        .split(|&b| b == 0)
        .filter(|k| !k.is_empty() && !k.starts_with(b"security."))
        .map(|k| {
            let mut v = vec![0u8; 4096];
            let len = rustix::fs::lgetxattr(p, k, &mut v).unwrap_or(0);
            format!(" {}={:?}", String::from_utf8_lossy(k), &v[..len])
        })
        .collect();
    out.sort();
    out.concat()
}

/// Everything visible of a tree: path -> (type, mode, content or link, inode
/// group, owner, time, xattrs).
fn snapshot(root: &Path) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>, inodes: &mut Vec<u64>) {
        let mut names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        for name in names {
            let p = dir.join(&name);
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            // Hard links show as the same group number in both trees.
            let group = match inodes.iter().position(|&i| i == m.ino()) {
                Some(g) => g,
                None => {
                    inodes.push(m.ino());
                    inodes.len() - 1
                }
            };
            let what = if m.is_dir() {
                format!("dir {:o}", m.mode() & 0o7777)
            } else if m.file_type().is_symlink() {
                format!("link {:?}", fs::read_link(&p).unwrap())
            } else if m.is_file() {
                format!("file {:o} {} #{group}", m.mode() & 0o7777, sha(&fs::read(&p).unwrap()))
            } else {
                format!("other {:o} {}", m.mode(), m.rdev())
            };
            // Left out: directory times (a failed unpack never sets them) and
            // whiteouts' (they keep their creation time, as with Docker).
            let whiteout = m.file_type().is_char_device() && m.rdev() == 0;
            let time = if m.is_dir() || whiteout { String::new() } else { format!(" t{}.{}", m.mtime(), m.mtime_nsec()) };
            let what = format!("{what} {}:{}{time}{}", m.uid(), m.gid(), xattrs_of(&p));
            out.push((rel, what));
            if m.is_dir() {
                walk(root, &p, out, inodes);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out, &mut Vec::new());
    out
}

#[test]
fn file_workers_keep_the_order_of_a_sequential_unpack() {
    // Random layers over a tiny namespace, so that names collide and entries
    // replace each other (files, symlinks, whiteouts), parents are reached
    // through symlinks ("x/a" is "d/a") and hard links point at files still
    // being written: with workers the result must be exactly the sequential one.
    let files = ["a", "b", "d/a", "d/b", "d/e/a", "d/e/b", "x/a", "x/b", "y/a"];
    let swapped = ["l1", "l2", "w1", "d/w2", "h1"]; // files, symlinks, whiteouts, links
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let t = TempDir::new();
    let mut completed = 0;
    for round in 0..40 {
        let mut entries: Vec<(String, T, Vec<u8>)> = vec![
            ("d/".into(), T::Directory, vec![]),
            ("d/e/".into(), T::Directory, vec![]),
            ("x".into(), T::Symlink, b"d".to_vec()),
            ("y".into(), T::Symlink, b"/d/e".to_vec()),
        ];
        let mut written: Vec<&str> = Vec::new();
        for i in 0..80 {
            let body = format!("{round}-{i}").into_bytes();
            let e = match next(12) {
                0..=5 => {
                    let f = files[next(files.len())];
                    written.push(f);
                    (f.to_string(), T::Regular, body)
                }
                6 => (swapped[next(swapped.len())].to_string(), T::Regular, body),
                7 => (swapped[next(2)].to_string(), T::Symlink, files[next(files.len())].as_bytes().to_vec()),
                8 => {
                    let w = ["w1", "d/w2"][next(2)];
                    let wh = w.rsplit_once('/').map_or(format!(".wh.{w}"), |(d, b)| format!("{d}/.wh.{b}"));
                    (wh, T::Regular, vec![])
                }
                9 if !written.is_empty() => ("h1".into(), T::Link, written[next(written.len())].as_bytes().to_vec()),
                10 => (["d/", "d/e/"][next(2)].to_string(), T::Directory, vec![]),
                _ => (files[next(files.len())].to_string(), T::Regular, vec![b'0' + (i % 10) as u8; 300_000]), // inline
            };
            entries.push(e);
        }
        let refs: Vec<(&str, T, &[u8])> = entries.iter().map(|(n, k, d)| (n.as_str(), *k, d.as_slice())).collect();
        let src = t.0.join(format!("l{round}"));
        fs::write(&src, tar_of(&refs)).unwrap();
        let run = |workers: usize| {
            let dst = t.0.join(format!("r{round}-{workers}"));
            let opts = UnpackOptions { file_workers: Some(workers), ..Default::default() };
            let r = unpack_layer_path(&src, &dst, &opts).map(|s| s.size).map_err(|e| e.to_string());
            (r, snapshot(&dst))
        };
        let sequential = run(0);
        completed += sequential.0.is_ok() as usize;
        for workers in [1, 4] {
            let parallel = run(workers);
            if sequential.0.is_ok() {
                assert_eq!(parallel, sequential, "round {round}, {workers} workers");
            } else {
                // On an error the tree is abandoned by the caller; the error must match.
                assert_eq!(parallel.0, sequential.0, "round {round}, {workers} workers");
            }
        }
    }
    assert!(completed >= 30, "only {completed} of 40 random layers unpacked: the test lost its teeth");
}

/// One entry of a layer with its metadata spelled out.
struct Spec {
    name: &'static str,
    kind: T,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    data: &'static [u8],
    xattrs: &'static [(&'static str, &'static [u8])],
}

fn spec(name: &'static str, kind: T, mode: u32, owner: (u64, u64), data: &'static [u8]) -> Spec {
    Spec { name, kind, mode, uid: owner.0, gid: owner.1, mtime: 1_600_000_000 + name.len() as u64, data, xattrs: &[] }
}

fn tar_of_specs(specs: &[Spec]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in specs {
        if !e.xattrs.is_empty() {
            let keys: Vec<(String, &[u8])> = e.xattrs.iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v)).collect();
            b.append_pax_extensions(keys.iter().map(|(k, v)| (k.as_str(), *v))).unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_path(e.name).unwrap();
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        if e.kind.is_symlink() || e.kind.is_hard_link() {
            h.set_link_name_literal(e.data).unwrap();
            h.set_size(0);
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        } else {
            h.set_size(e.data.len() as u64);
            h.set_cksum();
            b.append(&h, e.data).unwrap();
        }
    }
    b.into_inner().unwrap()
}

/// A POSIX ACL xattr value (version 2): u::rw-, g::---, o::--- . As a default
/// ACL it makes new files 0600 whatever mode they are created with.
const ACL_OWNER_ONLY: &[u8] = &[
    2, 0, 0, 0, // version
    0x01, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, // ACL_USER_OBJ rw-
    0x04, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, // ACL_GROUP_OBJ ---
    0x20, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, // ACL_OTHER ---
];

/// Each entry's mode, owner (as root), time and xattrs as the tar has them,
/// whatever the create mode, umask, setgid parents and default ACLs would give.
fn assert_metadata_as_in_tar(root: &Path, specs: &[Spec]) {
    for e in specs {
        if e.kind.is_hard_link() || e.name.contains(".wh.") {
            continue;
        }
        let p = root.join(e.name.trim_end_matches('/'));
        let m = fs::symlink_metadata(&p).unwrap_or_else(|err| panic!("{}: {err}", e.name));
        if !e.kind.is_symlink() {
            assert_eq!(m.mode() & 0o7777, e.mode, "mode of {}", e.name);
        }
        if is_root() {
            assert_eq!((m.uid() as u64, m.gid() as u64), (e.uid, e.gid), "owner of {}", e.name);
        }
        assert_eq!(m.mtime() as u64, e.mtime, "mtime of {}", e.name);
        for (k, v) in e.xattrs {
            let mut buf = vec![0u8; 256];
            let n = rustix::fs::lgetxattr(&p, *k, &mut buf).unwrap_or_else(|err| panic!("{k} of {}: {err}", e.name));
            assert_eq!(&buf[..n], *v, "{k} of {}", e.name);
        }
        if e.kind == T::Regular {
            assert_eq!(fs::read(&p).unwrap(), e.data, "content of {}", e.name);
        }
    }
}

#[test]
fn metadata_is_exact_whatever_the_creation_defaults() {
    // Modes inside and outside the umask, special bits, other owners, a
    // setgid directory (its files would take its group), a default ACL (its
    // files would take its mode): the skipped chown/chmod must never show.
    let me = (rustix::process::geteuid().as_raw() as u64, rustix::process::getegid().as_raw() as u64);
    let other = if is_root() { (1000, 1001) } else { me };
    // One layer per case: once a layer has a setgid directory or a default
    // ACL, nothing is skipped for the rest of it.
    let plain = vec![
        spec("plain/", T::Directory, 0o755, me, b""),
        spec("plain/rw", T::Regular, 0o644, me, b"a"),
        spec("plain/exec", T::Regular, 0o755, me, b"b"),
        spec("plain/ro", T::Regular, 0o444, me, b"c"),
        spec("plain/none", T::Regular, 0o000, me, b"d"),
        spec("plain/wide", T::Regular, 0o666, me, b"e"),
        spec("plain/suid", T::Regular, 0o4755, me, b"f"),
        spec("plain/theirs", T::Regular, 0o640, other, b"g"),
        spec("plain/sub/", T::Directory, 0o750, other, b""),
        spec("plain/sub/f", T::Regular, 0o600, me, b"h"),
        spec("plain/link", T::Symlink, 0o777, other, b"rw"),
        spec("plain/hard", T::Link, 0o644, me, b"plain/rw"),
        spec("plain/rodir/", T::Directory, 0o555, me, b""),
        spec("plain/rodir/f", T::Regular, 0o644, me, b"i"),
        Spec { xattrs: &[("user.note", b"v\x00w")], ..spec("plain/attr", T::Regular, 0o644, me, b"n") },
    ];
    let setgid = vec![
        spec("early", T::Regular, 0o644, me, b"o"),
        spec("group/", T::Directory, 0o2775, other, b""),
        spec("group/f", T::Regular, 0o644, me, b"j"),
        spec("group/d/", T::Directory, 0o755, me, b""),
        spec("group/d/f", T::Regular, 0o644, me, b"k"),
        spec("group/l", T::Symlink, 0o777, me, b"f"),
    ];
    let acl = vec![
        spec("early", T::Regular, 0o644, me, b"o"),
        Spec { xattrs: &[("system.posix_acl_default", ACL_OWNER_ONLY)], ..spec("acl/", T::Directory, 0o755, me, b"") },
        spec("acl/f", T::Regular, 0o644, me, b"l"),
        spec("acl/x", T::Regular, 0o755, me, b"m"),
        spec("acl/sub/", T::Directory, 0o755, me, b""),
        spec("acl/sub/f", T::Regular, 0o644, me, b"p"),
    ];
    let t = TempDir::new();
    for (case, specs) in [("plain", plain), ("setgid", setgid), ("acl", acl)] {
        let src = t.0.join(format!("{case}.tar"));
        fs::write(&src, tar_of_specs(&specs)).unwrap();
        let mut trees = Vec::new();
        for workers in [0, 1, 3] {
            let root = t.0.join(format!("{case}-{workers}"));
            let opts = UnpackOptions { file_workers: Some(workers), ..Default::default() };
            unpack_layer_path(&src, &root, &opts).unwrap();
            assert_metadata_as_in_tar(&root, &specs);
            trees.push(snapshot(&root));
        }
        assert_eq!(trees[0], trees[1], "{case}");
        assert_eq!(trees[0], trees[2], "{case}");
    }
}

#[test]
fn a_target_that_is_not_empty_gets_owners_and_modes_set() {
    if !is_root() {
        return; // a setgid directory of another group needs chown
    }
    // A directory already there may pass its group on: nothing is assumed.
    let t = TempDir::new();
    let root = t.0.join("root");
    fs::create_dir_all(root.join("shared")).unwrap();
    std::os::unix::fs::chown(root.join("shared"), Some(0), Some(4242)).unwrap();
    fs::set_permissions(root.join("shared"), fs::Permissions::from_mode(0o2777)).unwrap();
    let specs = vec![spec("shared/f", T::Regular, 0o644, (0, 0), b"x"), spec("shared/g", T::Regular, 0o600, (0, 0), b"y")];
    let src = t.0.join("layer.tar");
    fs::write(&src, tar_of_specs(&specs)).unwrap();
    for workers in [0, 2] {
        let opts = UnpackOptions { file_workers: Some(workers), ..Default::default() };
        let _ = fs::remove_file(root.join("shared/f"));
        let _ = fs::remove_file(root.join("shared/g"));
        unpack_layer_path(&src, &root, &opts).unwrap();
        assert_metadata_as_in_tar(&root, &specs);
    }
}
