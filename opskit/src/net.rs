//! The address rules every SIP binary applies to its `[sip] listen` and `advertise`.

use std::net::{IpAddr, SocketAddr};

/// Why an advertise address cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvertiseError {
    /// The listener is on the unspecified address and nothing says what to advertise.
    #[error(
        "sip.listen is {0} (any address): set sip.advertise to the address peers reach; a \
         0.0.0.0 listener must never end up in an SA, Path or Service-Route"
    )]
    Missing(IpAddr),
    /// Unspecified, broadcast or multicast.
    #[error("{0} is not a unicast address peers can send to")]
    NotUnicast(IpAddr),
    /// The listen socket would not receive what is sent to it.
    #[error(
        "{advertise} would not reach the listener on {listen}: advertise an address the \
         listen socket receives (or listen on 0.0.0.0 / [::])"
    )]
    Unreachable {
        /// The configured advertise address.
        advertise: IpAddr,
        /// The listen IP.
        listen: IpAddr,
    },
}

/// The IP a node listening on `listen` tells its peers (Via, Path, Service-Route, SAs):
/// `advertise`, or the listen IP itself. A wildcard listener must name one, since a
/// `0.0.0.0` in a header or an SA reaches nobody; and the advertised address must be one
/// the listen socket receives.
pub fn advertise_ip(
    listen: SocketAddr,
    advertise: Option<IpAddr>,
) -> Result<IpAddr, AdvertiseError> {
    let Some(a) = advertise else {
        if listen.ip().is_unspecified() {
            return Err(AdvertiseError::Missing(listen.ip()));
        }
        return Ok(listen.ip());
    };
    let not_unicast = match a {
        IpAddr::V4(v4) => v4.is_broadcast() || v4.is_multicast(),
        IpAddr::V6(v6) => v6.is_multicast(),
    };
    if a.is_unspecified() || not_unicast {
        return Err(AdvertiseError::NotUnicast(a));
    }
    // A specific listen address only receives what is sent to it, and an IPv4 socket never
    // receives IPv6 (`::` may receive both).
    let reachable = if listen.ip().is_unspecified() {
        listen.is_ipv6() || a.is_ipv4()
    } else {
        a == listen.ip()
    };
    if !reachable {
        return Err(AdvertiseError::Unreachable {
            advertise: a,
            listen: listen.ip(),
        });
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn wildcards_need_a_reachable_unicast_advertise() {
        let v4: IpAddr = "10.45.0.1".parse().unwrap();
        assert_eq!(
            advertise_ip(sa("127.0.0.1:5060"), None),
            Ok([127, 0, 0, 1].into())
        );
        assert!(matches!(
            advertise_ip(sa("0.0.0.0:5060"), None),
            Err(AdvertiseError::Missing(_))
        ));
        assert_eq!(advertise_ip(sa("0.0.0.0:5060"), Some(v4)), Ok(v4));
        assert_eq!(advertise_ip(sa("[::]:5060"), Some(v4)), Ok(v4));
        for (listen, adv) in [
            ("127.0.0.1:5060", "10.0.0.1"),
            ("0.0.0.0:5060", "::1"),
            ("0.0.0.0:5060", "0.0.0.0"),
            ("0.0.0.0:5060", "255.255.255.255"),
            ("[::]:5060", "ff02::1"),
        ] {
            assert!(
                advertise_ip(sa(listen), Some(adv.parse().unwrap())).is_err(),
                "{listen} {adv}"
            );
        }
    }
}
