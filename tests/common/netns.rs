//! Network namespaces for fault tests: each node of a cluster in a namespace of its own, joined
//! to the test's namespace by a veth pair on a bridge, so that a test can cut a node off the
//! network as a real fault does (its link down: clients, replication and the quorum all lose
//! it at once) and heal it. Needs root (`ip netns`); [`Isolation::create`] answers `None`
//! where that is not available, and the tests that need it say they were skipped.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The namespaces, links and bridge of one cluster, removed on drop.
pub struct Isolation {
    /// A prefix unique to this cluster in this machine's network: names and the subnet.
    tag: String,
    subnet: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Isolation {
    /// Namespaces for nodes 1..=`nodes`, or `None` when they cannot be made here.
    pub fn create(nodes: u32) -> Option<Isolation> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("tl{}x{n}", pid % 100_000);
        // 10.a.b.0/24, from the process id and the cluster's number.
        let subnet = format!(
            "10.{}.{}",
            100 + (pid % 150),
            (pid / 150 % 200 + n * 7) % 250
        );
        let iso = Isolation { tag, subnet };
        let bridge = iso.bridge();
        let host = format!("{}.254/24", iso.subnet);
        let made = ip(&["link", "add", &bridge, "type", "bridge"])
            && ip(&["addr", "add", &host, "dev", &bridge])
            && ip(&["link", "set", &bridge, "up"])
            && (1..=nodes).all(|i| iso.add_node(i));
        made.then_some(iso)
    }

    fn bridge(&self) -> String {
        format!("{}b", self.tag)
    }

    fn namespace(&self, i: u32) -> String {
        format!("{}n{i}", self.tag)
    }

    /// The host end of node `i`'s link: down is the cut.
    fn link(&self, i: u32) -> String {
        format!("{}h{i}", self.tag)
    }

    fn add_node(&self, i: u32) -> bool {
        let (ns, host, inner) = (self.namespace(i), self.link(i), format!("{}c{i}", self.tag));
        let addr = format!("{}/24", self.address(i));
        ip(&["netns", "add", &ns])
            && ip(&["link", "add", &host, "type", "veth", "peer", "name", &inner])
            && ip(&["link", "set", &inner, "netns", &ns])
            && ip(&["link", "set", &host, "master", &self.bridge(), "up"])
            && ip(&["-n", &ns, "addr", "add", &addr, "dev", &inner])
            && ip(&["-n", &ns, "link", "set", &inner, "up"])
            && ip(&["-n", &ns, "link", "set", "lo", "up"])
    }

    /// Node `i`'s address.
    pub fn address(&self, i: u32) -> String {
        format!("{}.{i}", self.subnet)
    }

    /// `cmd` run in node `i`'s namespace (`ip netns exec` execs it: same process).
    pub fn wrap(&self, i: u32, cmd: &Command) -> Command {
        let mut wrapped = Command::new("ip");
        wrapped
            .args(["netns", "exec", &self.namespace(i)])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        wrapped
    }

    /// Cuts node `i` off the network (its link down), or heals it.
    pub fn cut(&self, i: u32, cut: bool) {
        let state = if cut { "down" } else { "up" };
        assert!(
            ip(&["link", "set", &self.link(i), state]),
            "link of node {i} {state}"
        );
    }
}

impl Drop for Isolation {
    fn drop(&mut self) {
        for i in 1..=9 {
            // Deleting a namespace deletes its end of the veth pair, and so the pair.
            let _ = ip(&["netns", "del", &self.namespace(i)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}
