//! One end of a sec-agree SA set plus an echo exchange, for the real-kernel VM test and manual
//! interop checks (kernel ⇄ kernel, userspace ⇄ kernel, userspace ⇄ userspace).
//!
//! ```text
//! sa_echo --role pcscf|ue --backend kernel|userspace|auto --ue 10.0.0.2 --pcscf 10.0.0.1
//!         [--alg hmac-sha-1-96] [--ealg aes-cbc] [--count 10] [--size 1000] [--tcp]
//!         [--esp-sa FILE] [--timeout-secs 20]
//! ```
//!
//! Both ends must be given the same parameters (CK/IK, SPIs and ports are fixed test values).
//! The UE sends `count` datagrams of `size` bytes from port_uc to port_ps; the P-CSCF echoes
//! each back on SA 3. With `--tcp` (kernel backend only: there is no userspace TCP) the UE
//! connects from port_uc to port_ps and the bytes are echoed over TCP. The last line is
//! `XFRM-ECHO RESULT ok ...` or `XFRM-ECHO RESULT FAIL ...`, and the exit code says the same.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use xfrm::model::{EncryptionAlg, IntegrityAlg, SaSet, Side, SocketAddrPair, Spis};
use xfrm::userspace::Inbound;
use xfrm::{select, BackendKind, IpsecBackend, Selected, Tag};

struct Args {
    role: Side,
    backend: BackendKind,
    ue: IpAddr,
    pcscf: IpAddr,
    alg: IntegrityAlg,
    ealg: EncryptionAlg,
    count: usize,
    size: usize,
    tcp: bool,
    esp_sa: Option<String>,
    timeout: Duration,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        role: Side::Pcscf,
        backend: BackendKind::Auto,
        ue: "10.0.0.2".parse().map_err(|e| format!("{e}"))?,
        pcscf: "10.0.0.1".parse().map_err(|e| format!("{e}"))?,
        alg: IntegrityAlg::HmacSha1_96,
        ealg: EncryptionAlg::AesCbc,
        count: 10,
        size: 1000,
        tcp: false,
        esp_sa: None,
        timeout: Duration::from_secs(20),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--tcp" {
            a.tcp = true;
            continue;
        }
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{k} {v}: {e}");
        match k.as_str() {
            "--role" => {
                a.role = match v.as_str() {
                    "pcscf" => Side::Pcscf,
                    "ue" => Side::Ue,
                    _ => return Err(format!("--role {v}: pcscf or ue")),
                }
            }
            "--backend" => a.backend = v.parse().map_err(|e| bad(&e))?,
            "--ue" => a.ue = v.parse().map_err(|e| bad(&e))?,
            "--pcscf" => a.pcscf = v.parse().map_err(|e| bad(&e))?,
            "--alg" => a.alg = v.parse().map_err(|e| bad(&e))?,
            "--ealg" => a.ealg = v.parse().map_err(|e| bad(&e))?,
            "--count" => a.count = v.parse().map_err(|e| bad(&e))?,
            "--size" => a.size = v.parse().map_err(|e| bad(&e))?,
            "--esp-sa" => a.esp_sa = Some(v),
            "--timeout-secs" => a.timeout = Duration::from_secs(v.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("unknown option {k}")),
        }
    }
    Ok(a)
}

fn run(a: &Args) -> Result<String, String> {
    let set = SaSet::new(
        SocketAddrPair {
            addr: a.ue,
            client: 31800,
            server: 31900,
        },
        SocketAddrPair {
            addr: a.pcscf,
            client: 5100,
            server: 5101,
        },
        Spis {
            uc: 0x3001,
            us: 0x3002,
            pc: 0x3003,
            ps: 0x3004,
        },
        a.alg,
        a.ealg,
        &[0x5c; 16],
        &[0x1a; 16],
        Duration::from_secs(60),
        Instant::now(),
    )
    .map_err(|e| e.to_string())?;
    let sel = select(a.backend, Tag::default()).map_err(|e| e.to_string())?;
    let ue_c = SocketAddr::new(a.ue, set.port_uc);
    let p_s = SocketAddr::new(a.pcscf, set.port_ps);
    let (local, peer) = if a.role == Side::Ue {
        (ue_c, p_s)
    } else {
        (p_s, ue_c)
    };
    let deadline = Instant::now() + a.timeout;
    let payload: Vec<u8> = (0..a.size).map(|i| b"SIP/2.0 echo "[i % 13]).collect();
    let mut done = 0;
    let name;
    match sel {
        Selected::Kernel(k) => {
            name = "kernel";
            let id = k.install(&set, a.role).map_err(|e| e.to_string())?;
            export(a, &set)?;
            let r = if a.tcp {
                tcp_echo(a, ue_c, p_s, &payload, &mut done)
            } else {
                udp_kernel(a, local, peer, &payload, deadline, &mut done)
            };
            let _ = k.delete(id);
            r?;
        }
        Selected::Userspace(u, mut rx) => {
            name = "userspace";
            if a.tcp {
                return Err("--tcp needs the kernel backend (no userspace TCP)".into());
            }
            let id = u.install(&set, a.role).map_err(|e| e.to_string())?;
            export(a, &set)?;
            while done < a.count && Instant::now() < deadline {
                if a.role == Side::Ue {
                    u.send_udp(local, peer, &payload)
                        .map_err(|e| e.to_string())?;
                }
                let wait = Instant::now() + Duration::from_millis(200);
                while Instant::now() < wait {
                    match rx.try_recv() {
                        Ok(Inbound::Udp {
                            src,
                            dst,
                            payload: p,
                            ..
                        }) if src == peer && dst == local => {
                            if a.role == Side::Pcscf {
                                u.send_udp(local, peer, &p).map_err(|e| e.to_string())?;
                                done += 1;
                            } else if p == payload {
                                done += 1;
                            }
                            break;
                        }
                        Ok(_) => {}
                        Err(_) => std::thread::sleep(Duration::from_millis(1)),
                    }
                }
            }
            let c = u.endpoint().counters();
            eprintln!("userspace counters: {c:?}");
            let _ = u.delete(id);
        }
    }
    if done == a.count {
        Ok(format!(
            "role={:?} backend={name} {}/{} count={done} size={}",
            a.role, a.alg, a.ealg, a.size
        ))
    } else {
        Err(format!(
            "only {done}/{} echoes through the {name} backend",
            a.count
        ))
    }
}

fn export(a: &Args, set: &SaSet) -> Result<(), String> {
    if let Some(p) = &a.esp_sa {
        xfrm::uat::write_esp_sa_file(p.as_ref(), [set]).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn udp_kernel(
    a: &Args,
    local: SocketAddr,
    peer: SocketAddr,
    payload: &[u8],
    deadline: Instant,
    done: &mut usize,
) -> Result<(), String> {
    let e = |e: std::io::Error| e.to_string();
    let s = UdpSocket::bind(local).map_err(e)?;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(e)?;
    let mut buf = vec![0u8; 65536];
    while *done < a.count && Instant::now() < deadline {
        if a.role == Side::Ue {
            s.send_to(payload, peer).map_err(e)?;
        }
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            if from == peer && (a.role == Side::Pcscf || buf[..n] == *payload) {
                if a.role == Side::Pcscf {
                    s.send_to(&buf[..n], peer).map_err(e)?;
                }
                *done += 1;
            }
        }
    }
    Ok(())
}

fn tcp_echo(
    a: &Args,
    ue_c: SocketAddr,
    p_s: SocketAddr,
    payload: &[u8],
    done: &mut usize,
) -> Result<(), String> {
    let e = |e: std::io::Error| e.to_string();
    if a.role == Side::Pcscf {
        let l = TcpListener::bind(p_s).map_err(e)?;
        let (mut s, from) = l.accept().map_err(e)?;
        if from != ue_c {
            return Err(format!("TCP connection from {from}, expected {ue_c}"));
        }
        let mut buf = vec![0u8; payload.len()];
        for _ in 0..a.count {
            s.read_exact(&mut buf).map_err(e)?;
            s.write_all(&buf).map_err(e)?;
            *done += 1;
        }
    } else {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(ue_c),
            socket2::Type::STREAM,
            None,
        )
        .map_err(e)?;
        sock.set_reuse_address(true).map_err(e)?;
        sock.bind(&ue_c.into()).map_err(e)?;
        let start = Instant::now();
        // The P-CSCF end may still be starting: retry the connect for a while.
        loop {
            match sock.connect_timeout(&p_s.into(), Duration::from_secs(2)) {
                Ok(()) => break,
                Err(_) if start.elapsed() < a.timeout => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(err) => return Err(err.to_string()),
            }
        }
        let mut s: TcpStream = sock.into();
        let mut buf = vec![0u8; payload.len()];
        for _ in 0..a.count {
            s.write_all(payload).map_err(e)?;
            s.read_exact(&mut buf).map_err(e)?;
            if buf != payload {
                return Err("TCP echo differs".into());
            }
            *done += 1;
        }
    }
    Ok(())
}

fn main() {
    let r = parse().and_then(|a| run(&a));
    match r {
        Ok(m) => println!("XFRM-ECHO RESULT ok {m}"),
        Err(m) => {
            println!("XFRM-ECHO RESULT FAIL {m}");
            std::process::exit(1);
        }
    }
}
