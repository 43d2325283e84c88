//! One owner per [`Tag`] and network namespace.
//!
//! Every start of a backend through [`crate::select`] flushes the kernel state carrying its
//! tag: right for a restarted instance (its leftovers), fatal for a second live process that
//! happens to share the tag (the same identity by mistake, or a hash collision of
//! [`Tag::for_instance`]): it would delete the first one's SAs before failing to bind its own
//! address. So before flushing, the owner claims the tag with an abstract Unix socket named
//! after it (unix(7): the abstract namespace belongs to the network namespace, and the name is
//! released by the kernel when the holder dies, `kill -9` included). A second process in the
//! same namespace gets [`XfrmError::TagInUse`] and flushes nothing; in another namespace, the
//! same tag is free, as the XFRM state there is separate too.
//!
//! Within one process the claim is shared: backends of one process with the same tag in the
//! same namespace (tests, several hosts of one lab run) behave as before, coordinating among
//! themselves.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::{Arc, Mutex, Weak};

use crate::error::XfrmError;
use crate::kernel::Tag;

/// Holds a tag for this process in one network namespace until dropped.
#[derive(Debug)]
pub struct TagClaim {
    _socket: UnixDatagram,
}

/// Claims held by this process: (network namespace inode, tag).
type Held = Vec<(u64, Tag, Weak<TagClaim>)>;
static HELD: Mutex<Held> = Mutex::new(Vec::new());

/// The abstract socket name of a tag.
pub fn socket_name(tag: Tag) -> String {
    match tag {
        Tag::SelectorUser(u) => format!("imslab-xfrm-tag-user-{u:08x}"),
        Tag::Mark { value, mask } => format!("imslab-xfrm-tag-mark-{value:08x}-{mask:08x}"),
    }
}

fn netns_inode() -> io::Result<u64> {
    // The calling thread's namespace: a process may run threads in several (tests, lab).
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino())
}

/// Claims `tag` in the calling thread's network namespace, or shares this process's claim.
pub fn claim(tag: Tag) -> Result<Arc<TagClaim>, XfrmError> {
    let ns = netns_inode()?;
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    held.retain(|(_, _, w)| w.strong_count() > 0);
    if let Some(c) = held
        .iter()
        .filter(|(n, t, _)| *n == ns && *t == tag)
        .find_map(|(_, _, w)| w.upgrade())
    {
        return Ok(c);
    }
    let addr = SocketAddr::from_abstract_name(socket_name(tag).as_bytes())?;
    let socket = match UnixDatagram::bind_addr(&addr) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(XfrmError::TagInUse(tag)),
        Err(e) => return Err(e.into()),
    };
    let c = Arc::new(TagClaim { _socket: socket });
    held.push((ns, tag, Arc::downgrade(&c)));
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_within_the_process_released_on_drop() {
        let tag = Tag::for_this_process("claim-test");
        let a = claim(tag).unwrap();
        let b = claim(tag).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        // What another process would meet: the name is taken.
        let addr = SocketAddr::from_abstract_name(socket_name(tag).as_bytes()).unwrap();
        let e = UnixDatagram::bind_addr(&addr).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        drop((a, b));
        let again = UnixDatagram::bind_addr(&addr).unwrap();
        // Held by "another process" now: our claim is refused, before any flush.
        assert!(matches!(claim(tag), Err(XfrmError::TagInUse(t)) if t == tag));
        drop(again);
        claim(tag).unwrap();
    }
}
