//! End to end: a lying time server cannot turn a node's clock back below its floor (the image's build time), nor
//! throw it a year ahead on its own word; the node takes honest time again when it returns. The harness answers
//! SNTP on the host (QEMU's user network sends the guest's 10.0.2.2:123 there): one year back, then one year
//! ahead, then the truth.

use keel_e2e::{Vm, VmConfig};
use std::net::UdpSocket;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const YEAR: i64 = 365 * 24 * 3600;
/// SNTP retries a refused answer with backoff (here about 15 s, 35 s, 70 s apart under TCG).
const RETRY_TIMEOUT: Duration = Duration::from_secs(240);

/// An SNTPv4 server reply to `req`, its clock `offset_s` seconds away from the host's.
fn reply(req: &[u8], offset_s: i64) -> [u8; 48] {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = (now.as_secs() as i64 + offset_s + 2_208_988_800) as u64;
    let frac = ((u64::from(now.subsec_nanos())) << 32) / 1_000_000_000;
    let ts = ((secs << 32) | frac).to_be_bytes();
    let mut b = [0u8; 48];
    b[0] = 0x24; // LI 0, version 4, mode 4 (server)
    b[1] = 1; // stratum 1
    b[2] = 4;
    b[3] = 0xec;
    b[12..16].copy_from_slice(b"TEST");
    b[16..24].copy_from_slice(&ts);
    b[24..32].copy_from_slice(&req[40..48]);
    b[32..40].copy_from_slice(&ts);
    b[40..48].copy_from_slice(&ts);
    b
}

#[test]
fn qemu_sntp_cannot_set_the_clock_below_the_floor_or_a_year_ahead_alone() {
    let sock = UdpSocket::bind("127.0.0.1:123").expect("bind 127.0.0.1:123 for the test SNTP server (needs root)");
    let server = std::thread::spawn(move || {
        let mut answered = Vec::new();
        let mut buf = [0u8; 512];
        let _ = sock.set_read_timeout(Some(Duration::from_secs(300)));
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if n < 48 {
                continue;
            }
            let offset = match answered.len() {
                0 => -YEAR,
                1 => YEAR,
                _ => 0,
            };
            let _ = sock.send_to(&reply(&buf[..n], offset), from);
            answered.push(offset);
            if answered.len() >= 3 {
                break;
            }
        }
        answered
    });
    let cfg = VmConfig { append: "keel.ntp=10.0.2.2".into(), ..VmConfig::default() };
    let mut vm = Vm::boot("timefloor", &cfg);
    vm.expect_ready();
    let back = vm.expect("keel: time.refused ", RETRY_TIMEOUT);
    assert!(back.contains("reason=below-floor"), "a year back must be refused: {back}");
    let ahead = vm.expect("keel: time.refused ", RETRY_TIMEOUT);
    assert!(ahead.contains("reason=large-step-needs-agreement"), "a year ahead from one server: {ahead}");
    let synced = vm.expect("keel: time.sync ", RETRY_TIMEOUT);
    assert!(synced.contains("server=10.0.2.2"), "{synced}");
    // The honest answer may step the clock by the VM's own drift (under a second); never by the lies.
    for step in vm.transcript().iter().filter(|l| l.contains("keel: time.step ")) {
        let ms: f64 = keel_e2e::field(step, "offset_ms").and_then(|v| v.parse().ok()).unwrap_or(f64::MAX);
        assert!(ms.abs() < 60_000.0, "only honest time may step the clock: {step}");
    }
    let answered = server.join().unwrap_or_default();
    assert_eq!(answered, vec![-YEAR, YEAR, 0], "the server's answers");
}
