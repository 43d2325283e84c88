//! `ifc`: the IMS subscription profile and initial filter criteria.
//!
//! - [`model`]: `IMSSubscription` and its parts (TS 29.228 Annex B, CxDataType.xsd), with serde
//!   derives so the HSS can store and expose them as JSON.
//! - [`xml`]: User-Data XML both ways — [`ImsSubscription::to_xml`] writes exactly the schema's
//!   element names and order (what Kamailio's `ims_registrar_scscf` parses);
//!   [`ImsSubscription::from_xml`] reads tolerantly with typed errors.
//! - [`eval`]: iFC evaluation against any request type implementing [`RequestView`].
//!
//! ```
//! use ifc::*;
//! let sub = ImsSubscription {
//!     private_id: "001010000000001@ims.mnc001.mcc001.3gppnetwork.org".into(),
//!     service_profiles: vec![ServiceProfile {
//!         public_identities: vec![PublicIdentity {
//!             identity: "sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org".into(),
//!             ..Default::default()
//!         }],
//!         ..Default::default()
//!     }],
//! };
//! let xml = sub.to_xml();
//! assert_eq!(ImsSubscription::from_xml(&xml).unwrap(), sub);
//! ```

pub mod eval;
pub mod model;
pub mod xml;

pub use eval::{EvalContext, IfcMatcher, RequestView};
pub use model::*;
pub use xml::XmlError;
