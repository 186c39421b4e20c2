//! Listeners, process roles and the controller quorum, by Kafka's names: `listeners`,
//! `advertised.listeners`, `listener.security.protocol.map`, `controller.listener.names`,
//! `inter.broker.listener.name`, `process.roles`, `controller.quorum.voters` and
//! `controller.quorum.bootstrap.servers`.
//!
//! Each setting is parsed on its own as it is set; they are checked together once every
//! setting is in ([`resolve`], which `BrokerConfig::resolve` calls before the broker starts),
//! because Kafka's rules relate them (the controller listener must be one of the listeners, the
//! client listener is the one that is not the controller's, and so on). A Kafka KRaft
//! `server.properties` for one combined node (Kafka's quickstart) is accepted as it is, and so
//! is a quorum of several combined nodes (a cluster, `crate::cluster`). A broker-only or
//! controller-only node is refused with the reason: not supported yet.

use std::net::{SocketAddr, ToSocketAddrs};

use super::{BrokerConfig, ConfigError};

/// One entry of `listeners` or `advertised.listeners`: `NAME://host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    /// Empty: every interface (`PLAINTEXT://:9092`).
    pub host: String,
    pub port: u16,
}

/// One `controller.quorum.voters` entry: `id@host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Voter {
    pub id: i32,
    pub host: String,
    pub port: u16,
}

/// `process.roles`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Roles {
    pub broker: bool,
    pub controller: bool,
}

fn invalid(key: &str, value: &str, what: &str) -> ConfigError {
    ConfigError::invalid(format!("invalid value {value:?} for {key}: {what}"))
}

/// The comma-separated items of a list setting, trimmed, empty ones dropped.
pub fn items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// `host:port`, the host possibly empty or a bracketed IPv6 address.
fn host_port(key: &str, value: &str, item: &str) -> Result<(String, u16), ConfigError> {
    let (host, port) = item
        .rsplit_once(':')
        .ok_or_else(|| invalid(key, value, &format!("{item:?} is not HOST:PORT")))?;
    let port = port
        .parse()
        .map_err(|_| invalid(key, value, &format!("{port:?} is not a port")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), port))
}

/// `listeners` / `advertised.listeners`. A bare `host:port` (tidelog's `--listen` form) is a
/// PLAINTEXT listener. Names are upper-cased as Kafka does, and must not repeat.
pub fn parse_listeners(key: &str, value: &str) -> Result<Vec<Listener>, ConfigError> {
    let mut out: Vec<Listener> = Vec::new();
    for item in items(value) {
        let (name, rest) = item.split_once("://").unwrap_or(("PLAINTEXT", item));
        let name = name.trim().to_ascii_uppercase();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(invalid(
                key,
                value,
                &format!("{name:?} is not a listener name"),
            ));
        }
        if out.iter().any(|l| l.name == name) {
            return Err(invalid(
                key,
                value,
                &format!("listener {name} appears twice"),
            ));
        }
        let (host, port) = host_port(key, value, rest)?;
        out.push(Listener { name, host, port });
    }
    if out.is_empty() {
        return Err(invalid(key, value, "no listener"));
    }
    Ok(out)
}

/// `process.roles`: `broker`, `controller` or both.
pub fn parse_roles(key: &str, value: &str) -> Result<Roles, ConfigError> {
    let mut roles = Roles::default();
    for item in items(value) {
        match item {
            "broker" => roles.broker = true,
            "controller" => roles.controller = true,
            other => {
                return Err(invalid(
                    key,
                    value,
                    &format!("unknown role {other:?} (broker, controller)"),
                ))
            }
        }
    }
    if roles == Roles::default() {
        return Err(invalid(key, value, "no role"));
    }
    Ok(roles)
}

/// `controller.quorum.voters`: `id@host:port,...`.
pub fn parse_voters(key: &str, value: &str) -> Result<Vec<Voter>, ConfigError> {
    items(value)
        .map(|item| {
            let (id, addr) = item
                .split_once('@')
                .ok_or_else(|| invalid(key, value, &format!("{item:?} is not ID@HOST:PORT")))?;
            let id = id
                .parse()
                .map_err(|_| invalid(key, value, &format!("{id:?} is not a node id")))?;
            let (host, port) = host_port(key, value, addr)?;
            Ok(Voter { id, host, port })
        })
        .collect()
}

/// `controller.quorum.bootstrap.servers`: `host:port,...`.
pub fn parse_servers(key: &str, value: &str) -> Result<Vec<(String, u16)>, ConfigError> {
    items(value)
        .map(|item| host_port(key, value, item))
        .collect()
}

/// `listener.security.protocol.map`: `NAME:PROTOCOL,...`.
pub fn parse_protocol_map(key: &str, value: &str) -> Result<Vec<(String, String)>, ConfigError> {
    items(value)
        .map(|item| {
            let (name, protocol) = item
                .split_once(':')
                .ok_or_else(|| invalid(key, value, &format!("{item:?} is not NAME:PROTOCOL")))?;
            let protocol = protocol.trim().to_ascii_uppercase();
            if !["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"].contains(&protocol.as_str()) {
                return Err(invalid(
                    key,
                    value,
                    &format!("{protocol:?} is not a security protocol"),
                ));
            }
            Ok((name.trim().to_ascii_uppercase(), protocol))
        })
        .collect()
}

/// `controller.listener.names` / `inter.broker.listener.name`: names, upper-cased.
pub fn parse_names(value: &str) -> Vec<String> {
    items(value).map(str::to_ascii_uppercase).collect()
}

/// The security protocol of listener `name`.
fn protocol<'a>(c: &'a BrokerConfig, name: &str) -> Option<&'a str> {
    c.listener_security_protocol_map
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p.as_str())
}

/// Checks the listener and quorum settings together and fills in what the broker uses:
/// `listen` (the client listener's address) and `advertised_listener`.
pub fn resolve(c: &mut BrokerConfig) -> Result<(), ConfigError> {
    // Kafka's `effectiveListenerSecurityProtocolMap`: with the map left at its default, a
    // controller listener it does not name (CONTROLLER) is PLAINTEXT, so a KRaft command line
    // without the map works.
    if c.explicit_value("listener.security.protocol.map").is_none() {
        for name in c.controller_listener_names.clone() {
            if protocol(c, &name).is_none() {
                c.listener_security_protocol_map
                    .push((name, "PLAINTEXT".to_string()));
            }
        }
    }
    let controller_names = &c.controller_listener_names;
    let client = c
        .listeners
        .iter()
        .find(|l| !controller_names.contains(&l.name))
        .cloned();
    let controller_only = c.process_roles.is_some_and(|r| r.controller && !r.broker);
    let client = match client {
        Some(l) if controller_only => {
            return Err(ConfigError::invalid(format!(
                "process.roles=controller: listener {} is not a controller listener; a \
                 controller-only node serves no clients (as Kafka requires)",
                l.name
            )))
        }
        Some(l) => l,
        None if controller_only => {
            // No client listener: the node serves the quorum only.
            for l in &c.listeners {
                if protocol(c, &l.name) != Some("PLAINTEXT") {
                    return Err(ConfigError::invalid(format!(
                        "listener {} must be PLAINTEXT",
                        l.name
                    )));
                }
            }
            return check_roles(c);
        }
        None => {
            return Err(ConfigError::invalid(
                "listeners has no listener for clients: every one is named in \
                 controller.listener.names"
                    .to_string(),
            ))
        }
    };
    for l in &c.listeners {
        match protocol(c, &l.name) {
            Some("PLAINTEXT") => {}
            Some(p) => {
                return Err(ConfigError::invalid(format!(
                    "listener {} uses {p}; tidelog serves PLAINTEXT only until TLS and SASL land",
                    l.name
                )))
            }
            None => {
                return Err(ConfigError::invalid(format!(
                    "listener {} has no security protocol: name it in \
                     listener.security.protocol.map (as Kafka requires)",
                    l.name
                )))
            }
        }
    }
    if let Some(name) = &c.inter_broker_listener_name {
        if !c.listeners.iter().any(|l| &l.name == name) || controller_names.contains(name) {
            return Err(ConfigError::invalid(format!(
                "inter.broker.listener.name {name} must be one of the listeners and not a \
                 controller listener"
            )));
        }
    }
    check_roles(c)?;
    c.listen = bind_address(&client)?;
    // The advertised entry of the client listener; a bare HOST:PORT is taken as it.
    c.advertised_listener = c
        .advertised_listeners
        .iter()
        .find(|a| a.name == client.name)
        .or(match c.advertised_listeners.as_slice() {
            [only] if only.name == "PLAINTEXT" => Some(only),
            _ => None,
        })
        .map(|a| (a.host.clone(), a.port));
    Ok(())
}

/// Kafka's role rules: a controller is one of the voters and has a controller listener; a
/// broker-only node is not a voter and needs controllers to follow.
fn check_roles(c: &BrokerConfig) -> Result<(), ConfigError> {
    let Some(roles) = c.process_roles else {
        if c.is_cluster() {
            return Err(ConfigError::invalid(
                "controller.quorum.voters names other controllers but process.roles is not \
                 set: a node of a cluster needs its roles (process.roles=broker,controller)"
                    .to_string(),
            ));
        }
        // No roles: tidelog's own single node, as before.
        return Ok(());
    };
    let voter = c.controller_quorum_voters.iter().any(|v| v.id == c.node_id);
    if !roles.controller {
        if c.controller_quorum_voters.is_empty() {
            return Err(ConfigError::invalid(
                "process.roles=broker needs controllers to follow: name them in \
                 controller.quorum.voters"
                    .to_string(),
            ));
        }
        if voter {
            return Err(ConfigError::invalid(format!(
                "node.id {} is in controller.quorum.voters but process.roles does not include \
                 controller",
                c.node_id
            )));
        }
        return Ok(());
    }
    if !c
        .controller_listener_names
        .iter()
        .any(|n| c.listeners.iter().any(|l| &l.name == n))
    {
        return Err(ConfigError::invalid(
            "controller.listener.names must name one of the listeners when process.roles \
             includes controller (as Kafka requires)"
                .to_string(),
        ));
    }
    if !c.controller_quorum_voters.is_empty()
        && !c.controller_quorum_voters.iter().any(|v| v.id == c.node_id)
    {
        return Err(ConfigError::invalid(format!(
            "node.id {} is a controller but not in controller.quorum.voters",
            c.node_id
        )));
    }
    if c.controller_quorum_bootstrap_servers.len() > 1 {
        return Err(ConfigError::invalid(
            "controller.quorum.bootstrap.servers names several controllers: tidelog's quorum is \
             static; name the controllers in controller.quorum.voters"
                .to_string(),
        ));
    }
    Ok(())
}

/// The socket address to bind for a listener: an empty host is every interface, a name is
/// resolved (IPv4 first, as `localhost` should mean 127.0.0.1).
fn bind_address(l: &Listener) -> Result<SocketAddr, ConfigError> {
    if l.host.is_empty() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], l.port)));
    }
    let addrs: Vec<SocketAddr> = (l.host.as_str(), l.port)
        .to_socket_addrs()
        .map_err(|e| {
            ConfigError::invalid(format!(
                "listener {}: cannot resolve {}: {e}",
                l.name, l.host
            ))
        })?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| {
            ConfigError::invalid(format!("listener {}: {} has no address", l.name, l.host))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(settings: &[(&str, &str)]) -> Result<BrokerConfig, ConfigError> {
        let mut c = BrokerConfig::default();
        for (k, v) in settings {
            c.set(k, v)?;
        }
        c.resolve()?;
        Ok(c)
    }

    /// Kafka's KRaft quickstart `server.properties`, the listener and quorum part.
    const QUICKSTART: &[(&str, &str)] = &[
        ("process.roles", "broker,controller"),
        ("node.id", "1"),
        ("controller.quorum.voters", "1@localhost:9093"),
        ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093"),
        ("inter.broker.listener.name", "PLAINTEXT"),
        (
            "advertised.listeners",
            "PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093",
        ),
        ("controller.listener.names", "CONTROLLER"),
        (
            "listener.security.protocol.map",
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
        ),
    ];

    #[test]
    fn the_quickstart_combined_node_listens_for_clients_on_the_non_controller_listener() {
        let c = config(QUICKSTART).unwrap();
        assert_eq!(c.listen, "0.0.0.0:9092".parse().unwrap());
        assert_eq!(c.advertised_listener, Some(("localhost".into(), 9092)));
        // Kafka 4's dynamic quorum form.
        let mut v = QUICKSTART.to_vec();
        v[2] = ("controller.quorum.bootstrap.servers", "localhost:9093");
        assert_eq!(config(&v).unwrap().listen.port(), 9092);
    }

    #[test]
    fn listen_moves_the_client_listener_and_keeps_the_controller_one() {
        let mut c = BrokerConfig::default();
        for (k, v) in QUICKSTART {
            c.set(k, v).unwrap();
        }
        c.override_client_listener("127.0.0.1:0").unwrap();
        c.resolve().unwrap();
        assert_eq!(c.listen, "127.0.0.1:0".parse().unwrap());
        assert!(c
            .listeners
            .iter()
            .any(|l| l.name == "CONTROLLER" && l.port == 9093));
        assert_eq!(
            c.explicit_value("listeners"),
            Some("PLAINTEXT://127.0.0.1:0,CONTROLLER://:9093")
        );
        assert!(c.override_client_listener("a:1,b:2").is_err());
    }

    #[test]
    fn the_old_forms_still_work() {
        let c = config(&[("listeners", "127.0.0.1:7000")]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:7000".parse().unwrap());
        let c = config(&[("listen", "127.0.0.1:7001"), ("advertised.listener", "h:1")]).unwrap();
        assert_eq!(c.listen.port(), 7001);
        assert_eq!(c.advertised_listener, Some(("h".into(), 1)));
        let c = config(&[("listeners", "PLAINTEXT://localhost:7002")]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:7002".parse().unwrap());
    }

    #[test]
    fn several_voters_make_a_cluster_and_the_controller_listener_defaults_to_plaintext() {
        let mut s: Vec<(&str, &str)> = QUICKSTART
            .iter()
            .filter(|(k, _)| *k != "controller.quorum.voters")
            .copied()
            .collect();
        s.push((
            "controller.quorum.voters",
            "1@127.0.0.1:9093,2@127.0.0.2:9093,3@127.0.0.3:9093",
        ));
        let c = config(&s).unwrap();
        assert!(c.is_cluster());
        assert_eq!(c.controller_listener().unwrap().port, 9093);
        // The command line: no listener.security.protocol.map at all.
        let c = config(&[
            ("node.id", "2"),
            ("process.roles", "broker,controller"),
            ("controller.quorum.voters", "1@127.0.0.1:1,2@127.0.0.2:1"),
            (
                "listeners",
                "PLAINTEXT://127.0.0.2:2,CONTROLLER://127.0.0.2:1",
            ),
            ("controller.listener.names", "CONTROLLER"),
        ])
        .unwrap();
        assert_eq!(c.listen, "127.0.0.2:2".parse().unwrap());
        let err = config(&[
            ("controller.quorum.voters", "1@127.0.0.1:1,2@127.0.0.2:1"),
            (
                "listeners",
                "PLAINTEXT://127.0.0.2:2,CONTROLLER://127.0.0.2:1",
            ),
            ("controller.listener.names", "CONTROLLER"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().contains("process.roles is not set"),
            "{err}"
        );
    }

    #[test]
    fn what_a_single_node_cannot_be_is_refused_with_the_reason() {
        let with = |k: &'static str, v: &'static str| {
            let mut s = QUICKSTART.to_vec();
            s.retain(|(key, _)| *key != k);
            s.push((k, v));
            config(&s).unwrap_err().to_string()
        };
        let cases = [
            (
                with("process.roles", "broker"),
                "does not include controller",
            ),
            (
                with("process.roles", "controller"),
                "process.roles=controller",
            ),
            (with("process.roles", "broker,zookeeper"), "unknown role"),
            (
                with("controller.listener.names", "NOPE"),
                "controller.listener.names",
            ),
            (
                with("controller.quorum.voters", "2@localhost:9093"),
                "not in controller.quorum.voters",
            ),
            (
                with("controller.quorum.voters", "x@localhost:9093"),
                "not a node id",
            ),
            (
                with(
                    "listener.security.protocol.map",
                    "CONTROLLER:PLAINTEXT,PLAINTEXT:SSL",
                ),
                "uses SSL",
            ),
            (
                with("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT"),
                "CONTROLLER has no security protocol",
            ),
            (
                with("listeners", "PLAINTEXT://:1,PLAINTEXT://:2"),
                "appears twice",
            ),
            (
                with("inter.broker.listener.name", "CONTROLLER"),
                "inter.broker.listener.name",
            ),
        ];
        for (err, want) in cases {
            assert!(err.contains(want), "{err:?} should say {want:?}");
        }
        let only_controller = config(&[
            ("listeners", "CONTROLLER://:9093"),
            ("controller.listener.names", "CONTROLLER"),
            ("listener.security.protocol.map", "CONTROLLER:PLAINTEXT"),
        ]);
        assert!(only_controller
            .unwrap_err()
            .to_string()
            .contains("no listener for clients"));
    }
}
