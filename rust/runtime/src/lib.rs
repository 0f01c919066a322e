//! Container process creation: namespaces, rootfs, capabilities, exec.
