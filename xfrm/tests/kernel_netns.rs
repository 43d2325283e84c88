//! Kernel backend in a network namespace created by the test: policies installed, listed and
//! flushed by tag; foreign state untouched; SA install fails with the clear no-ESP error on a
//! kernel without ESP (and succeeds, with rollback-free listing, on one with it).

mod common;

use xfrm::netns::{have, is_root, require, NetNs};
use xfrm::{Direction, EncryptionAlg, IntegrityAlg, KernelBackend, Side, Tag, XfrmError};

#[test]
fn policies_listed_and_flushed_by_tag_and_no_esp_error() {
    if !require(
        is_root() && have("ip"),
        "needs root and iproute2 for network namespaces",
    ) {
        return;
    }
    let ns = NetNs::create("xfrmt-k").unwrap();
    // Foreign state: a policy without our tag must survive our flush.
    ns.ip(&[
        "xfrm",
        "policy",
        "add",
        "src",
        "192.0.2.1/32",
        "dst",
        "192.0.2.2/32",
        "dir",
        "out",
        "tmpl",
        "proto",
        "esp",
        "mode",
        "transport",
    ])
    .unwrap();
    let result = ns
        .run(|| {
            let kb = KernelBackend::new(Tag::default()).unwrap();
            assert_eq!(kb.flush().unwrap(), 0, "fresh netns has none of our state");
            let v4 = common::set(
                "10.20.0.2",
                "10.20.0.1",
                4096,
                IntegrityAlg::HmacSha1_96,
                EncryptionAlg::AesCbc,
            );
            let v6 = common::set(
                "fd00::2",
                "fd00::1",
                8192,
                IntegrityAlg::HmacMd5_96,
                EncryptionAlg::Null,
            );
            let id4 = kb.install_policies_only(&v4, Side::Pcscf).unwrap();
            let _id6 = kb.install_policies_only(&v6, Side::Ue).unwrap();
            let st = kb.list().unwrap();
            assert_eq!(st.policies.len(), 8, "{st:#?}");
            assert!(st.sas.is_empty());
            // P-CSCF view of SA 1: UE:port_uc -> P:port_ps inbound with spi_ps.
            let p1 = st
                .policies
                .iter()
                .find(|p| p.spi == Some(v4.spi_ps))
                .expect("policy of SA 1");
            assert_eq!(
                (p1.sport, p1.dport, p1.dir),
                (v4.port_uc, v4.port_ps, Direction::In)
            );
            // UE view of SA 1 (IPv6 set): the mirror, outbound.
            let u1 = st
                .policies
                .iter()
                .find(|p| p.spi == Some(v6.spi_ps))
                .unwrap();
            assert_eq!(u1.dir, Direction::Out);
            assert_eq!(u1.src, v6.ue);
            // Installing the same policies again fails (EEXIST) and rolls back nothing of id4.
            let again = kb.install_policies_only(&v4, Side::Pcscf).unwrap_err();
            assert!(
                matches!(again, XfrmError::Netlink { errno, .. } if errno == libc::EEXIST),
                "{again}"
            );
            assert_eq!(kb.list().unwrap().policies.len(), 8);
            kb.delete(id4).unwrap();
            assert_eq!(kb.list().unwrap().policies.len(), 4);
            assert_eq!(kb.flush().unwrap(), 4);
            assert_eq!(kb.list().unwrap(), Default::default());

            // Full install: needs ESP.
            let esp = kb.probe_esp().unwrap();
            let r = kb.install(&v4, Side::Pcscf);
            if esp {
                let id = r.unwrap();
                let st = kb.list().unwrap();
                assert_eq!((st.sas.len(), st.policies.len()), (4, 4));
                kb.delete(id).unwrap();
            } else {
                let e = r.unwrap_err();
                assert!(matches!(e, XfrmError::KernelLacksEsp));
                assert_eq!(
                    e.to_string(),
                    "kernel lacks ESP (CONFIG_INET_ESP); use the userspace backend"
                );
            }
            // Nothing of ours is left either way (partial installs are rolled back).
            assert_eq!(kb.list().unwrap(), Default::default());
            esp
        })
        .unwrap();
    eprintln!("kernel ESP available: {result}");
    let foreign = String::from_utf8(ns.ip(&["xfrm", "policy"]).unwrap().stdout).unwrap();
    assert!(
        foreign.contains("192.0.2.1"),
        "foreign policy was flushed: {foreign}"
    );
}

#[test]
fn mark_tag_lists_only_marked_state() {
    if !require(
        is_root() && have("ip"),
        "needs root and iproute2 for network namespaces",
    ) {
        return;
    }
    let ns = NetNs::create("xfrmt-m").unwrap();
    ns.run(|| {
        let a = KernelBackend::new(Tag::Mark {
            value: 0x1f00,
            mask: 0xffff_ff00,
        })
        .unwrap();
        let b = KernelBackend::new(Tag::SelectorUser(77)).unwrap();
        let s = common::set(
            "10.21.0.2",
            "10.21.0.1",
            600,
            IntegrityAlg::HmacMd5_96,
            EncryptionAlg::DesEde3Cbc,
        );
        a.install_policies_only(&s, Side::Pcscf).unwrap();
        // Same selectors with another tag: distinct kernel objects only for the mark tag.
        b.install_policies_only(&s, Side::Ue).unwrap();
        assert_eq!(a.list().unwrap().policies.len(), 4);
        assert_eq!(b.list().unwrap().policies.len(), 4);
        assert_eq!(a.flush().unwrap(), 4);
        assert_eq!(b.list().unwrap().policies.len(), 4);
        assert_eq!(b.flush().unwrap(), 4);
    })
    .unwrap();
}

#[test]
fn partial_install_rolled_back_and_ext_ack_surfaced() {
    if !require(
        is_root() && have("ip"),
        "needs root and iproute2 for network namespaces",
    ) {
        return;
    }
    let ns = NetNs::create("xfrmt-r").unwrap();
    let s = common::set(
        "10.22.0.2",
        "10.22.0.1",
        700,
        IntegrityAlg::HmacSha1_96,
        EncryptionAlg::AesCbc,
    );
    ns.run(|| {
        let kb = KernelBackend::new(Tag::default()).unwrap();
        let mut sock = xfrm::kernel::NetlinkSocket::open().unwrap();
        // A policy with our tag, the selector and the direction of SA 3 (P:port_ps ->
        // UE:port_uc, out) makes the third NEWPOLICY fail with EEXIST after two succeeded.
        // (A foreign policy would not: the kernel compares whole selectors, tag included.)
        let sa3 = s.sas(Side::Pcscf)[2];
        sock.request(xfrm::kernel::msg::new_policy(&sa3, Tag::default()), || {
            "pre".into()
        })
        .unwrap();
        let e = kb.install_policies_only(&s, Side::Pcscf).unwrap_err();
        assert!(
            matches!(e, XfrmError::Netlink { errno, .. } if errno == libc::EEXIST),
            "{e}"
        );
        assert!(e.to_string().contains("NEWPOLICY"), "{e}");
        let left = kb.list().unwrap();
        assert_eq!(
            left.policies.len(),
            1,
            "policies 1 and 2 rolled back: {left:#?}"
        );
        assert_eq!(left.policies[0].spi, Some(sa3.spi));
        assert!(kb.live_sets().is_empty());
        assert_eq!(kb.flush().unwrap(), 1);

        // Extended ack text reaches the error: an invalid policy direction, sent raw.
        let mut m = xfrm::kernel::msg::new_policy(&s.sas(Side::Pcscf)[0], Tag::default());
        // xfrm_userpolicy_info.dir follows selector(56) + lifetime cfg(64) + cur(32) +
        // priority(4) + index(4).
        m[16 + 56 + 64 + 32 + 8] = 7;
        let e = sock.request(m, || "NEWPOLICY dir 7".into()).unwrap_err();
        match &e {
            XfrmError::Netlink { errno, message, .. } => {
                assert_eq!(*errno, libc::EINVAL);
                let text = message.as_deref().unwrap_or("");
                assert!(text.to_lowercase().contains("direction"), "ext ack: {e}");
            }
            other => panic!("{other}"),
        }
        eprintln!("surfaced: {e}");
    })
    .unwrap();
}

#[test]
fn backend_selection() {
    if !require(
        is_root() && have("ip"),
        "needs root and iproute2 for network namespaces",
    ) {
        return;
    }
    let ns = NetNs::create("xfrmt-s").unwrap();
    ns.run(|| {
        let probe = KernelBackend::new(Tag::default())
            .unwrap()
            .probe_esp()
            .unwrap();
        let auto = xfrm::select(xfrm::BackendKind::Auto, Tag::default()).unwrap();
        let kernel = xfrm::select(xfrm::BackendKind::Kernel, Tag::default());
        let user = xfrm::select(xfrm::BackendKind::Userspace, Tag::default()).unwrap();
        assert_eq!(user.backend().name(), "userspace");
        if probe {
            assert_eq!(auto.backend().name(), "kernel");
            assert!(kernel.is_ok());
        } else {
            assert_eq!(auto.backend().name(), "userspace");
            assert!(matches!(kernel, Err(XfrmError::KernelLacksEsp)));
        }
        // The probe leaves nothing behind.
        assert_eq!(
            KernelBackend::new(Tag::default()).unwrap().list().unwrap(),
            Default::default()
        );
    })
    .unwrap();
}

#[test]
fn delete_after_external_flush_is_ok() {
    if !require(
        is_root() && have("ip"),
        "needs root and iproute2 for network namespaces",
    ) {
        return;
    }
    let ns = NetNs::create("xfrmt-d").unwrap();
    ns.run(|| {
        let kb = KernelBackend::new(Tag::default()).unwrap();
        let s = common::set(
            "fd23::2",
            "fd23::1",
            900,
            IntegrityAlg::HmacMd5_96,
            EncryptionAlg::AesCbc,
        );
        let id = kb.install_policies_only(&s, Side::Pcscf).unwrap();
        // Someone (a restarted instance) flushes our tag behind this backend's back.
        assert_eq!(
            KernelBackend::new(Tag::default()).unwrap().flush().unwrap(),
            4
        );
        kb.delete(id).unwrap();
        assert!(matches!(kb.delete(id), Err(XfrmError::UnknownSet(_))));
    })
    .unwrap();
}
