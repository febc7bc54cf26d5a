//! Bonds, VLANs and bridges: the links Keel makes itself, on top of the NICs. Servers sit on LACP bonds and
//! tagged VLANs, often before any config can be fetched (a switch port in LACP mode forwards nothing until the
//! bond negotiates), so they come from the kernel command line too, in dracut's syntax:
//!
//! - `bond=<name>[:<member>,<member>…[:<option>,<option>…[:<mtu>]]]`, options `mode=802.3ad|active-backup|…`,
//!   `miimon=MS`, `lacp_rate=slow|fast`, `xmit_hash_policy=layer2|layer3+4|layer2+3|encap2+3|encap3+4`,
//!   `updelay=MS`, `downdelay=MS`, `min_links=N` (dracut's default: `bond0:eth0,eth1`, mode balance-rr);
//! - `vlan=<name>:<parent>`, the id taken from the name as dracut does: `bond0.100`, `vlan100`, `vlan0100`;
//! - `bridge=<name>:<member>,<member>…`.
//!
//! This module holds the model and the parsers (pure); [`super::plan`] converges them and
//! [`super::netlink`] makes them.

use super::model::LinkMatch;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BondMode {
    BalanceRr,
    ActiveBackup,
    BalanceXor,
    Broadcast,
    Lacp,
    BalanceTlb,
    BalanceAlb,
}

impl BondMode {
    pub const NAMES: &'static str =
        "balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb";

    /// The kernel's number for the mode (IFLA_BOND_MODE), and its names (as sysfs and dracut write them).
    pub fn parse(s: &str) -> Option<BondMode> {
        Some(match s {
            "balance-rr" | "0" => BondMode::BalanceRr,
            "active-backup" | "1" => BondMode::ActiveBackup,
            "balance-xor" | "2" => BondMode::BalanceXor,
            "broadcast" | "3" => BondMode::Broadcast,
            "802.3ad" | "lacp" | "4" => BondMode::Lacp,
            "balance-tlb" | "5" => BondMode::BalanceTlb,
            "balance-alb" | "6" => BondMode::BalanceAlb,
            _ => return None,
        })
    }

    pub fn number(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for BondMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BondMode::BalanceRr => "balance-rr",
            BondMode::ActiveBackup => "active-backup",
            BondMode::BalanceXor => "balance-xor",
            BondMode::Broadcast => "broadcast",
            BondMode::Lacp => "802.3ad",
            BondMode::BalanceTlb => "balance-tlb",
            BondMode::BalanceAlb => "balance-alb",
        })
    }
}

/// xmit_hash_policy: which header fields pick the member a flow leaves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashPolicy {
    Layer2,
    Layer34,
    Layer23,
    Encap23,
    Encap34,
}

impl HashPolicy {
    pub fn parse(s: &str) -> Option<HashPolicy> {
        Some(match s {
            "layer2" => HashPolicy::Layer2,
            "layer3+4" => HashPolicy::Layer34,
            "layer2+3" => HashPolicy::Layer23,
            "encap2+3" => HashPolicy::Encap23,
            "encap3+4" => HashPolicy::Encap34,
            _ => return None,
        })
    }
}

/// A bond's knobs; `None` leaves the kernel's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BondOptions {
    pub mode: BondMode,
    pub miimon: Option<u32>,
    pub lacp_rate_fast: Option<bool>,
    pub xmit_hash_policy: Option<HashPolicy>,
    pub updelay: Option<u32>,
    pub downdelay: Option<u32>,
    pub min_links: Option<u32>,
}

impl Default for BondOptions {
    fn default() -> Self {
        // miimon 100: without link monitoring a bond never notices a dead member (dracut and NetworkManager
        // set the same).
        BondOptions {
            mode: BondMode::BalanceRr,
            miimon: Some(100),
            lacp_rate_fast: None,
            xmit_hash_policy: None,
            updelay: None,
            downdelay: None,
            min_links: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirtualKind {
    Bond(BondOptions),
    Vlan { parent: LinkMatch, id: u16 },
    Bridge,
}

impl VirtualKind {
    /// The kernel's link kind (IFLA_INFO_KIND).
    pub fn kind(&self) -> &'static str {
        match self {
            VirtualKind::Bond(_) => "bond",
            VirtualKind::Vlan { .. } => "vlan",
            VirtualKind::Bridge => "bridge",
        }
    }
}

/// A bond, VLAN or bridge Keel makes and keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualLink {
    pub name: String,
    pub kind: VirtualKind,
    /// Bond and bridge members.
    pub members: Vec<LinkMatch>,
    pub mtu: Option<u32>,
}

/// The longest interface name the kernel takes (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b':' && b != b',')
}

fn ifname(what: &str, name: &str) -> Result<String, String> {
    if valid_ifname(name) {
        Ok(name.to_string())
    } else {
        Err(format!("{what} {name:?} is not an interface name (1-15 printable characters, no '/', ':' or ',')"))
    }
}

fn number(key: &str, value: &str) -> Result<u32, String> {
    value.parse().map_err(|_| format!("{key}={value:?} is not a number"))
}

/// `bond=` (dracut's syntax, above).
pub fn parse_bond(value: &str) -> Result<VirtualLink, String> {
    let f: Vec<&str> = value.split(':').collect();
    if f.len() > 4 {
        return Err(format!("{} fields; bond= has at most 4 (name:members:options:mtu)", f.len()));
    }
    let name = ifname("bond name", f.first().copied().filter(|n| !n.is_empty()).unwrap_or("bond0"))?;
    let members = match f.get(1).copied().filter(|m| !m.is_empty()) {
        None => vec!["eth0", "eth1"],
        Some(m) => m.split(',').collect(),
    };
    let members =
        members.into_iter().map(|m| ifname("bond member", m).map(LinkMatch::Name)).collect::<Result<Vec<_>, _>>()?;
    let mut opts = BondOptions::default();
    for opt in f.get(2).copied().unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        let (key, v) = opt.split_once('=').ok_or_else(|| format!("bond option {opt:?} is not key=value"))?;
        match key {
            "mode" => {
                opts.mode = BondMode::parse(v).ok_or_else(|| format!("mode={v:?} is not one of {}", BondMode::NAMES))?
            }
            "miimon" => opts.miimon = Some(number(key, v)?),
            "updelay" => opts.updelay = Some(number(key, v)?),
            "downdelay" => opts.downdelay = Some(number(key, v)?),
            "min_links" => opts.min_links = Some(number(key, v)?),
            "lacp_rate" => {
                opts.lacp_rate_fast = Some(match v {
                    "fast" | "1" => true,
                    "slow" | "0" => false,
                    _ => return Err(format!("lacp_rate={v:?} is not slow or fast")),
                })
            }
            "xmit_hash_policy" => {
                opts.xmit_hash_policy = Some(HashPolicy::parse(v).ok_or_else(|| {
                    format!("xmit_hash_policy={v:?} is not layer2, layer2+3, layer3+4, encap2+3 or encap3+4")
                })?)
            }
            _ => {
                return Err(format!(
                    "unknown bond option {key:?}; known: mode, miimon, lacp_rate, xmit_hash_policy, updelay, \
                     downdelay, min_links"
                ))
            }
        }
    }
    let mtu = match f.get(3).copied().filter(|m| !m.is_empty()) {
        None => None,
        Some(m) => Some(
            number("mtu", m)
                .ok()
                .filter(|m| (68..=65535).contains(m))
                .ok_or_else(|| format!("mtu {m:?} is not a number from 68 to 65535"))?,
        ),
    };
    Ok(VirtualLink { name, kind: VirtualKind::Bond(opts), members, mtu })
}

/// The VLAN id dracut reads from a VLAN's name: `eth0.100`, `bond0.0100`, `vlan100`, `vlan0100`.
pub fn vlan_id_from_name(name: &str) -> Option<u16> {
    let digits = match name.rsplit_once('.') {
        Some((_, id)) => id,
        None => name.strip_prefix("vlan")?,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u16>().ok().filter(|id| (1..=4094).contains(id))
}

/// `vlan=<name>:<parent>`.
pub fn parse_vlan(value: &str) -> Result<VirtualLink, String> {
    let (name, parent) = value.split_once(':').ok_or_else(|| format!("{value:?} is not <name>:<parent>"))?;
    let name = ifname("VLAN name", name)?;
    let parent = ifname("VLAN parent", parent)?;
    let id = vlan_id_from_name(&name).ok_or_else(|| {
        format!("the VLAN id (1-4094) is not in the name {name:?}: name it <parent>.<id> or vlan<id>")
    })?;
    Ok(VirtualLink {
        name,
        kind: VirtualKind::Vlan { parent: LinkMatch::Name(parent), id },
        members: vec![],
        mtu: None,
    })
}

/// `bridge=<name>:<member>,<member>…`.
pub fn parse_bridge(value: &str) -> Result<VirtualLink, String> {
    let (name, members) = value.split_once(':').unwrap_or((value, ""));
    let name = ifname("bridge name", name)?;
    let members = members
        .split(',')
        .filter(|m| !m.is_empty())
        .map(|m| ifname("bridge member", m).map(LinkMatch::Name))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(VirtualLink { name, kind: VirtualKind::Bridge, members, mtu: None })
}

/// Every `bond=`, `vlan=` and `bridge=` of the command line; a bad one is reported and left out (the boot goes
/// on: the node may still reach its config over another link).
pub fn from_cmdline(bonds: &[String], vlans: &[String], bridges: &[String]) -> (Vec<VirtualLink>, Vec<String>) {
    let mut links = Vec::new();
    let mut errors = Vec::new();
    let all = bonds
        .iter()
        .map(|v| ("bond", v, parse_bond as fn(&str) -> Result<VirtualLink, String>))
        .chain(bridges.iter().map(|v| ("bridge", v, parse_bridge as fn(&str) -> Result<VirtualLink, String>)))
        .chain(vlans.iter().map(|v| ("vlan", v, parse_vlan as fn(&str) -> Result<VirtualLink, String>)));
    for (key, value, parse) in all {
        match parse(value) {
            Ok(l) if links.iter().any(|o: &VirtualLink| o.name == l.name) => {
                errors.push(format!("{key}={value}: {} is already defined", l.name))
            }
            Ok(l) => links.push(l),
            Err(e) => errors.push(format!("{key}={value}: {e}")),
        }
    }
    (links, errors)
}

/// The config's `[[network.bond]]`, `[[network.bridge]]` and `[[network.vlan]]` (validated already: a name the
/// config accepted always parses here).
pub fn from_config(net: &keel_config::model::Network) -> Vec<VirtualLink> {
    let names = |v: &[String]| v.iter().map(|m| LinkMatch::Name(m.clone())).collect::<Vec<_>>();
    let bonds = net.bonds.iter().map(|b| {
        let opts = BondOptions {
            mode: BondMode::parse(&b.mode).unwrap_or(BondMode::ActiveBackup),
            miimon: b.miimon.or(Some(100)),
            lacp_rate_fast: b.lacp_rate.as_deref().map(|r| r == "fast"),
            xmit_hash_policy: b.xmit_hash_policy.as_deref().and_then(HashPolicy::parse),
            updelay: b.updelay,
            downdelay: b.downdelay,
            min_links: b.min_links,
        };
        VirtualLink { name: b.name.clone(), kind: VirtualKind::Bond(opts), members: names(&b.members), mtu: None }
    });
    let bridges = net.bridges.iter().map(|b| VirtualLink {
        name: b.name.clone(),
        kind: VirtualKind::Bridge,
        members: names(&b.members),
        mtu: None,
    });
    let vlans = net.vlans.iter().map(|v| VirtualLink {
        name: v.name.clone(),
        kind: VirtualKind::Vlan { parent: LinkMatch::Name(v.parent.clone()), id: v.id },
        members: vec![],
        mtu: None,
    });
    bonds.chain(bridges).chain(vlans).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[LinkMatch]) -> Vec<String> {
        v.iter().map(|m| m.to_string()).collect()
    }

    #[test]
    fn bonds_in_dracut_syntax() {
        let b = parse_bond("bond0:eno1,eno2:mode=802.3ad,miimon=100,lacp_rate=fast,xmit_hash_policy=layer3+4:9000")
            .unwrap();
        assert_eq!(b.name, "bond0");
        assert_eq!(names(&b.members), ["eno1", "eno2"]);
        assert_eq!(b.mtu, Some(9000));
        let VirtualKind::Bond(o) = &b.kind else { panic!("{b:?}") };
        assert_eq!(
            (o.mode, o.miimon, o.lacp_rate_fast, o.xmit_hash_policy),
            (BondMode::Lacp, Some(100), Some(true), Some(HashPolicy::Layer34))
        );
        // dracut's defaults: bond0 over eth0,eth1, balance-rr.
        let d = parse_bond("").unwrap();
        assert_eq!((d.name.as_str(), names(&d.members)), ("bond0", vec!["eth0".to_string(), "eth1".to_string()]));
        assert!(matches!(d.kind, VirtualKind::Bond(BondOptions { mode: BondMode::BalanceRr, .. })));
        let ab = parse_bond("bond1:eth0,eth1:mode=active-backup,updelay=200,downdelay=0,min_links=1").unwrap();
        let VirtualKind::Bond(o) = &ab.kind else { panic!() };
        assert_eq!(
            (o.mode, o.updelay, o.downdelay, o.min_links),
            (BondMode::ActiveBackup, Some(200), Some(0), Some(1))
        );
    }

    #[test]
    fn bad_bonds_say_what_is_wrong() {
        let err = |v: &str| parse_bond(v).unwrap_err();
        assert!(err("bond0:eth0:mode=fast").contains("mode=\"fast\" is not one of"));
        assert!(err("bond0:eth0:miimon").contains("not key=value"));
        assert!(err("bond0:eth0:frobnicate=1").contains("unknown bond option \"frobnicate\""));
        assert!(err("bond0:eth0::12").contains("mtu \"12\""));
        assert!(err("bond0:eth0:lacp_rate=medium").contains("slow or fast"));
        assert!(err("averyveryverylongname:eth0").contains("not an interface name"));
        assert!(err("a:b:c:d:e").contains("at most 4"));
    }

    #[test]
    fn vlans_take_their_id_from_the_name() {
        let v = parse_vlan("bond0.100:bond0").unwrap();
        assert_eq!(v.kind, VirtualKind::Vlan { parent: LinkMatch::Name("bond0".into()), id: 100 });
        assert_eq!(vlan_id_from_name("vlan0042"), Some(42));
        assert_eq!(vlan_id_from_name("eth0.4094"), Some(4094));
        assert_eq!(vlan_id_from_name("eth0.4095"), None);
        assert_eq!(vlan_id_from_name("eth0.0"), None);
        assert_eq!(vlan_id_from_name("mgmt"), None);
        assert!(parse_vlan("mgmt:eth0").unwrap_err().contains("VLAN id"));
        assert!(parse_vlan("eth0.7").unwrap_err().contains("<name>:<parent>"));
    }

    #[test]
    fn bridges_and_the_whole_command_line() {
        let br = parse_bridge("br0:eth2,eth3").unwrap();
        assert_eq!((br.kind.kind(), names(&br.members)), ("bridge", vec!["eth2".to_string(), "eth3".to_string()]));
        let (links, errors) = from_cmdline(
            &["bond0:eth0,eth1:mode=802.3ad".into(), "bond0:eth2".into()],
            &["bond0.100:bond0".into(), "x:eth0".into()],
            &["br0:eth3".into()],
        );
        let got: Vec<(&str, &str)> = links.iter().map(|l| (l.name.as_str(), l.kind.kind())).collect();
        assert_eq!(got, [("bond0", "bond"), ("br0", "bridge"), ("bond0.100", "vlan")]);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("bond0 is already defined"), "{errors:?}");
        assert!(errors[1].starts_with("vlan=x:eth0: "), "{errors:?}");
    }
}
