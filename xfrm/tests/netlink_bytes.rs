//! Byte-level: the NEWSA/NEWPOLICY messages we build equal what `ip xfrm state add` and
//! `ip xfrm policy add` send for the same parameters (captured with strace), ignoring the
//! sequence number and port id. `ip` cannot set the selector's user field, so for the default
//! tag that field is checked to hold the tag and then compared as zero; with a mark tag the
//! comparison is exact (`ip ... mark V mask M`).

mod common;

use xfrm::kernel::msg;
use xfrm::netns::{have, is_root, require, NetNs};
use xfrm::{EncryptionAlg, IntegrityAlg, SaDesc, SaSet, Side, Tag};

/// Decodes the `"\x.."` payload and header fields of the first sendmsg strace printed.
fn captured(ns: &NetNs, args: &[String]) -> (u32, String, String, Vec<u8>) {
    let out = ns
        .command("strace")
        .args(["-f", "-e", "trace=sendmsg", "-x", "-s", "65535", "ip"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("XFRM_MSG_NEW"))
        .unwrap_or_else(|| panic!("no XFRM sendmsg captured for {args:?}:\n{text}"));
    let field = |name: &str| -> String {
        let i = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
        line[i..].split([',', '}']).next().unwrap().to_string()
    };
    let len: u32 = field("nlmsg_len").parse().unwrap();
    let q = line.find("}, \"").unwrap() + 4;
    let end = q + line[q..].find('"').unwrap();
    let hex = &line[q..end];
    let bytes: Vec<u8> = hex
        .split("\\x")
        .filter(|s| !s.is_empty())
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    (len, field("nlmsg_type"), field("nlmsg_flags"), bytes)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn key_arg(k: &[u8]) -> String {
    if k.is_empty() {
        String::new()
    } else {
        format!("0x{}", hex(k))
    }
}

fn sel_args(sa: &SaDesc) -> Vec<String> {
    let p = if sa.src.is_ipv4() { 32 } else { 128 };
    vec![
        "src".into(),
        format!("{}/{p}", sa.src.ip()),
        "dst".into(),
        format!("{}/{p}", sa.dst.ip()),
        "sport".into(),
        sa.src.port().to_string(),
        "dport".into(),
        sa.dst.port().to_string(),
    ]
}

fn mark_args(tag: Tag) -> Vec<String> {
    match tag {
        Tag::Mark { value, mask } => vec![
            "mark".into(),
            format!("{value:#x}"),
            "mask".into(),
            format!("{mask:#x}"),
        ],
        Tag::SelectorUser(_) => vec![],
    }
}

fn ip_state_add(set: &SaSet, sa: &SaDesc, tag: Tag) -> Vec<String> {
    let mut a: Vec<String> = [
        "xfrm",
        "state",
        "add",
        "src",
        &sa.src.ip().to_string(),
        "dst",
        &sa.dst.ip().to_string(),
        "proto",
        "esp",
        "spi",
        &format!("{:#x}", sa.spi),
        "mode",
        "transport",
        "replay-window",
        "64",
        "auth-trunc",
        set.integrity.kernel_name(),
        &key_arg(&set.keys.auth),
        "96",
        "enc",
        set.encryption.kernel_name(),
        &key_arg(&set.keys.enc),
        "sel",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(sel_args(sa));
    a.extend(mark_args(tag));
    a
}

fn ip_policy_add(sa: &SaDesc, tag: Tag) -> Vec<String> {
    let mut a: Vec<String> = vec!["xfrm".into(), "policy".into(), "add".into()];
    a.extend(sel_args(sa));
    a.push("dir".into());
    a.push(
        if sa.dir == xfrm::Direction::In {
            "in"
        } else {
            "out"
        }
        .into(),
    );
    a.extend(mark_args(tag));
    a.extend(
        [
            "tmpl",
            "src",
            &sa.src.ip().to_string(),
            "dst",
            &sa.dst.ip().to_string(),
            "proto",
            "esp",
            "spi",
            &format!("{:#x}", sa.spi),
            "mode",
            "transport",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    a
}

/// Compares ours (header + payload) with ip's, returning a description of the first diff.
fn compare(
    ours: &[u8],
    ip: &(u32, String, String, Vec<u8>),
    ty: &str,
    tag: Tag,
) -> Result<(), String> {
    let (len, ip_ty, ip_flags, ip_payload) = ip;
    if ours.len() as u32 != *len {
        return Err(format!("length {} vs ip {len}", ours.len()));
    }
    if ip_ty != ty || ip_flags != "NLM_F_REQUEST|NLM_F_ACK" {
        return Err(format!("ip sent {ip_ty} {ip_flags}"));
    }
    if u16::from_ne_bytes([ours[6], ours[7]]) != 5 {
        return Err("our flags are not REQUEST|ACK".into());
    }
    let mut payload = ours[16..].to_vec();
    if let Tag::SelectorUser(u) = tag {
        // xfrm_selector.user is at offset 52 of both xfrm_usersa_info and xfrm_userpolicy_info.
        if payload[52..56] != u.to_ne_bytes() {
            return Err("selector user field does not carry the tag".into());
        }
        payload[52..56].fill(0);
    }
    if &payload != ip_payload {
        let i = payload
            .iter()
            .zip(ip_payload.iter())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        return Err(format!(
            "payload differs at byte {i}:\n ours {}\n   ip {}",
            hex(&payload),
            hex(ip_payload)
        ));
    }
    Ok(())
}

#[test]
fn newsa_and_newpolicy_equal_iproute2() {
    if !require(
        is_root() && have("ip") && have("strace"),
        "needs root, iproute2 and strace",
    ) {
        return;
    }
    let ns = NetNs::create("xfrmt-b").unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for (ue, pcscf) in [("10.30.0.2", "10.30.0.1"), ("2001:db8::2", "2001:db8::1")] {
        for i in IntegrityAlg::ALL {
            for e in EncryptionAlg::ALL {
                for tag in [
                    Tag::Mark {
                        value: 0x1f00,
                        mask: 0xffffffff,
                    },
                    Tag::default(),
                ] {
                    let set = common::set(ue, pcscf, 0x1000, i, e);
                    for side in [Side::Pcscf, Side::Ue] {
                        for sa in set.sas(side) {
                            // SA bytes do not depend on the side; check them once.
                            if side == Side::Pcscf {
                                let ip = captured(&ns, &ip_state_add(&set, &sa, tag));
                                if let Err(d) = compare(
                                    &msg::new_sa(&set, &sa, tag),
                                    &ip,
                                    "XFRM_MSG_NEWSA",
                                    tag,
                                ) {
                                    failures.push(format!(
                                        "NEWSA {i}/{e} {ue} {tag:?} {:?}: {d}",
                                        sa.kind
                                    ));
                                }
                                checked += 1;
                            }
                            let args = ip_policy_add(&sa, tag);
                            let ip = captured(&ns, &args);
                            if let Err(d) =
                                compare(&msg::new_policy(&sa, tag), &ip, "XFRM_MSG_NEWPOLICY", tag)
                            {
                                failures.push(format!(
                                    "NEWPOLICY {side:?} {ue} {tag:?} {:?}: {d}",
                                    sa.kind
                                ));
                            }
                            // Remove it again so the next identical selector can be added.
                            let mut del = args.clone();
                            del[2] = "delete".into();
                            let tmpl = del.iter().position(|a| a == "tmpl").unwrap();
                            del.truncate(tmpl);
                            ns.ip(&del.iter().map(String::as_str).collect::<Vec<_>>())
                                .unwrap();
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    eprintln!("compared {checked} messages with iproute2");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, 2 * 2 * 3 * 2 * (4 + 8));
}
