//! What the demo serves that no file names: the site of `web` and the zones of `dns` and
//! of the DNS upstream, all compiled into the binary and served from memory (the site
//! through [`weft_web::EmbeddedFiles`]), so running the demo writes nothing but its
//! history file.

use std::path::Path;

use weft_names::{Catalog, Zone};
use weft_web::EmbeddedFiles;

use crate::config::Config;
use crate::services::ServiceKind;

/// The site's files, by path.
const SITE: [(&str, &[u8]); 2] = [
    ("index.html", include_bytes!("site/index.html")),
    ("style.css", include_bytes!("site/style.css")),
];

/// The zone the demo's `dns` service answers for.
const ZONE: &str = include_str!("zones/weft.test.zone");

/// The zone of the demo's DNS upstream, reached by forwarding.
const UPSTREAM_ZONE: &str = include_str!("zones/upstream.test.zone");

/// The built-in site.
pub(crate) fn site() -> EmbeddedFiles {
    EmbeddedFiles::new(SITE).expect("the built-in site's paths are servable")
}

/// `text`, the built-in zone file `name`, parsed.
fn zone(name: &str, text: &str) -> Zone {
    Zone::parse(Path::new(name), text).expect("the built-in zones parse")
}

/// The DNS upstream's zones.
pub(crate) fn upstream_zones() -> Catalog {
    let mut catalog = Catalog::default();
    catalog
        .add(zone("built-in upstream.test.zone", UPSTREAM_ZONE))
        .expect("one zone");
    catalog
}

/// Gives the demo configuration's `web` service the built-in site and its `dns` service
/// the built-in zone.
pub(crate) fn add_to(config: &mut Config) {
    for service in &mut config.services {
        match (&mut service.kind, service.name.as_str()) {
            (ServiceKind::Http(http), "web") => http
                .serve_embedded(site())
                .expect("the demo's web service has no root"),
            (ServiceKind::Dns(dns), "dns") => dns
                .config
                .zones
                .add(zone("built-in weft.test.zone", ZONE))
                .expect("the demo's dns service has no other zone"),
            _ => {}
        }
    }
}
