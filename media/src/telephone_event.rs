//! The telephone-event payload (RFC 4733 §2.3): one named event (a DTMF digit, …) with its
//! end bit, volume and duration, and the duration's conversion between clock rates when a
//! bridge joins a 16000 Hz leg to an 8000 Hz one.

/// What is wrong with a telephone-event payload or its writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TelephoneEventError {
    /// The payload is not the 4 octets of one event.
    #[error("telephone-event payload of {0} bytes, expected 4")]
    Length(usize),
    /// The volume does not fit in 6 bits (0 to -63 dBm0).
    #[error("telephone-event volume {0} out of range 0-63")]
    Volume(u8),
    /// The output buffer is shorter than 4 bytes.
    #[error("buffer of {0} bytes, 4 needed")]
    BufferTooSmall(usize),
    /// A clock rate of zero.
    #[error("clock rate 0")]
    ClockRate,
}

/// One event as carried in an RTP packet (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// The event code (0–9 digits, 10 `*`, 11 `#`, 12–15 `A`–`D`; RFC 4733 §3.2).
    pub event: u8,
    /// The E bit: this packet ends the event.
    pub end: bool,
    /// Power level as 0 to 63, meaning 0 to -63 dBm0.
    pub volume: u8,
    /// Duration so far in timestamp units of the payload's clock.
    pub duration: u16,
}

const DIGITS: &[u8; 16] = b"0123456789*#ABCD";

impl TelephoneEvent {
    /// Parses the payload of a telephone-event RTP packet. The reserved R bit is ignored as
    /// §2.3 asks.
    pub fn parse(payload: &[u8]) -> Result<Self, TelephoneEventError> {
        let &[event, flags, d0, d1] = payload else {
            return Err(TelephoneEventError::Length(payload.len()));
        };
        Ok(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// Writes the 4-octet payload and returns 4.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, TelephoneEventError> {
        if self.volume > 63 {
            return Err(TelephoneEventError::Volume(self.volume));
        }
        let have = out.len();
        let out = out
            .get_mut(..4)
            .ok_or(TelephoneEventError::BufferTooSmall(have))?;
        out[0] = self.event;
        out[1] = (u8::from(self.end) << 7) | self.volume;
        out[2..4].copy_from_slice(&self.duration.to_be_bytes());
        Ok(4)
    }

    /// The same event with its duration in another clock's units (e.g. 16000 → 8000 Hz
    /// halves it). The duration saturates at 65535: RFC 4733 §2.5.1.3 has senders of longer
    /// events start a new segment, which the sender's next packet will do.
    pub fn with_clock_rate(&self, from_hz: u32, to_hz: u32) -> Result<Self, TelephoneEventError> {
        if from_hz == 0 || to_hz == 0 {
            return Err(TelephoneEventError::ClockRate);
        }
        let d = u64::from(self.duration) * u64::from(to_hz) / u64::from(from_hz);
        Ok(TelephoneEvent {
            duration: u16::try_from(d).unwrap_or(u16::MAX),
            ..*self
        })
    }

    /// The DTMF character of events 0–15.
    pub fn digit(&self) -> Option<char> {
        DIGITS.get(usize::from(self.event)).map(|&c| char::from(c))
    }

    /// The event code of a DTMF character (`0`–`9`, `*`, `#`, `A`–`D`, case-insensitive).
    pub fn event_of_digit(c: char) -> Option<u8> {
        let c = c.to_ascii_uppercase();
        DIGITS
            .iter()
            .position(|&d| char::from(d) == c)
            .map(|i| i as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_4733_layout() {
        // Digit 5, end, volume 10 (-10 dBm0), 800 units (100 ms at 8000 Hz).
        let e = TelephoneEvent::parse(&[5, 0x8A, 0x03, 0x20]).unwrap();
        assert_eq!(
            e,
            TelephoneEvent {
                event: 5,
                end: true,
                volume: 10,
                duration: 800
            }
        );
        assert_eq!(e.digit(), Some('5'));
        // The R bit is ignored.
        assert_eq!(TelephoneEvent::parse(&[5, 0xCA, 0x03, 0x20]), Ok(e));
        let mut out = [0u8; 4];
        assert_eq!(e.write(&mut out), Ok(4));
        assert_eq!(out, [5, 0x8A, 0x03, 0x20]);
    }

    #[test]
    fn clock_rate_conversion() {
        let e = TelephoneEvent {
            event: 11,
            end: false,
            volume: 0,
            duration: 1600,
        };
        assert_eq!(e.with_clock_rate(16_000, 8000).unwrap().duration, 800);
        assert_eq!(e.with_clock_rate(8000, 16_000).unwrap().duration, 3200);
        let long = TelephoneEvent {
            duration: 40_000,
            ..e
        };
        assert_eq!(
            long.with_clock_rate(8000, 16_000).unwrap().duration,
            u16::MAX
        );
        assert_eq!(
            e.with_clock_rate(0, 8000),
            Err(TelephoneEventError::ClockRate)
        );
    }

    #[test]
    fn digits_and_errors() {
        assert_eq!(TelephoneEvent::event_of_digit('#'), Some(11));
        assert_eq!(TelephoneEvent::event_of_digit('d'), Some(15));
        assert_eq!(TelephoneEvent::event_of_digit('x'), None);
        let flash = TelephoneEvent {
            event: 16,
            end: false,
            volume: 0,
            duration: 0,
        };
        assert_eq!(flash.digit(), None);
        assert_eq!(
            TelephoneEvent::parse(&[1, 2, 3]),
            Err(TelephoneEventError::Length(3))
        );
        assert_eq!(
            TelephoneEvent::parse(&[1, 2, 3, 4, 5]),
            Err(TelephoneEventError::Length(5))
        );
        assert_eq!(
            TelephoneEvent {
                volume: 64,
                ..flash
            }
            .write(&mut [0; 4]),
            Err(TelephoneEventError::Volume(64))
        );
        assert_eq!(
            flash.write(&mut [0; 3]),
            Err(TelephoneEventError::BufferTooSmall(3))
        );
    }

    proptest! {
        #[test]
        fn round_trip(event in any::<u8>(), end in any::<bool>(), volume in 0u8..64, duration in any::<u16>()) {
            let e = TelephoneEvent { event, end, volume, duration };
            let mut b = [0u8; 4];
            e.write(&mut b).unwrap();
            prop_assert_eq!(TelephoneEvent::parse(&b), Ok(e));
            // 8000 -> 16000 -> 8000 restores any duration that did not saturate.
            if duration <= u16::MAX / 2 {
                let back = e.with_clock_rate(8000, 16_000).unwrap().with_clock_rate(16_000, 8000).unwrap();
                prop_assert_eq!(back, e);
            }
        }
    }
}
