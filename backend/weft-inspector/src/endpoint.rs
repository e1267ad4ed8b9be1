//! Where a dashboard may listen: a `tcp:` endpoint, and off loopback only with a token.
//! [`Inspector::start`](crate::Inspector::start) and the gateway's configuration check
//! both ask [`dashboard_addr`].

use std::net::SocketAddr;

use weft::endpoint::{EndpointError, ServerEndpoint};

/// Why a dashboard may not listen on an endpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DashboardEndpointError {
    /// The text is not an endpoint.
    #[error(transparent)]
    Invalid(#[from] EndpointError),
    /// The endpoint is not a `tcp:` one.
    #[error("{0:?}: the dashboard listens on a tcp: endpoint")]
    NotTcp(String),
    /// The endpoint is reachable from other machines and the dashboard has no token.
    #[error(
        "{0:?} is reachable from other machines; give the dashboard a token or listen on a \
         loopback interface (tcp:PORT:interface=127.0.0.1)"
    )]
    NeedsToken(String),
    /// The token cannot be the dashboard's ([`weft_dashboard::token_problem`] says why).
    #[error("the dashboard's token {0}")]
    BadToken(String),
}

/// The address a dashboard listens on at `endpoint`, if it may: a `tcp:` endpoint, on a
/// loopback interface unless `token` is set (a blank token is no token), and a token it
/// can use ([`weft_dashboard::token_problem`]).
pub fn dashboard_addr(
    endpoint: &str,
    token: Option<&str>,
) -> Result<SocketAddr, DashboardEndpointError> {
    let ServerEndpoint::Tcp { addr, .. } = endpoint.parse::<ServerEndpoint>()? else {
        return Err(DashboardEndpointError::NotTcp(endpoint.to_owned()));
    };
    let token = token.filter(|t| !t.trim().is_empty());
    if let Some(why) = token.and_then(weft_dashboard::token_problem) {
        return Err(DashboardEndpointError::BadToken(why));
    }
    let has_token = token.is_some();
    if !addr.ip().is_loopback() && !has_token {
        return Err(DashboardEndpointError::NeedsToken(endpoint.to_owned()));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_loopback_a_dashboard_needs_a_token() {
        assert!(dashboard_addr("tcp:9180:interface=127.0.0.1", None).is_ok());
        assert!(dashboard_addr(r"tcp6:9180:interface=\:\:1", None).is_ok());
        for token in [None, Some(""), Some("  ")] {
            assert!(matches!(
                dashboard_addr("tcp:9180", token),
                Err(DashboardEndpointError::NeedsToken(_))
            ));
        }
        assert!(dashboard_addr("tcp:9180", Some("t0k-0123456789abcdef")).is_ok());
        for token in ["t0k", "has space in it, 0123"] {
            assert!(
                matches!(
                    dashboard_addr("tcp:9180:interface=127.0.0.1", Some(token)),
                    Err(DashboardEndpointError::BadToken(_))
                ),
                "{token}"
            );
        }
        assert!(matches!(
            dashboard_addr("udp:9180:interface=127.0.0.1", None),
            Err(DashboardEndpointError::NotTcp(_))
        ));
        assert!(matches!(
            dashboard_addr("nonsense", None),
            Err(DashboardEndpointError::Invalid(_))
        ));
    }
}
