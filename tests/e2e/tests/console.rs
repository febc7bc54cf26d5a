//! End to end: the consoles an operator watches on a real server. One BIOS boot with two UARTs and a VGA card,
//! `console=tty0 console=ttyS1,115200`: the `keel:` lines reach the second UART (what a BMC's Serial-over-LAN
//! shows) and the VGA text screen (what a KVM/iKVM shows). Linux's 8250 driver is one console, so ttyS1 replaces
//! ttyS0: the harness's reader on the first UART sees nothing, the test reads the second UART's file.

use keel_e2e::{Vm, VmConfig, STEP_TIMEOUT};
use std::path::Path;
use std::time::{Duration, Instant};

/// Waits until the file holds a line containing `needle`; panics with the file's tail on timeout.
fn wait_in_file(path: &Path, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        if Instant::now() > deadline {
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            panic!(
                "{}: no line containing {needle:?} after {}s; last lines: {tail:#?}",
                path.display(),
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The VGA text screen (80x25 character/attribute pairs at physical 0xb8000), as 25 lines of text.
fn vga_screen(vm: &mut Vm, dump: &Path) -> Vec<String> {
    let _ = std::fs::remove_file(dump);
    let reply = vm.qmp(&format!(
        r#"{{"execute":"pmemsave","arguments":{{"val":753664,"size":4000,"filename":"{}"}}}}"#,
        dump.display()
    ));
    assert!(reply.contains("return"), "pmemsave: {reply}");
    let bytes = std::fs::read(dump).unwrap_or_default();
    assert_eq!(bytes.len(), 4000, "pmemsave wrote {} bytes", bytes.len());
    let chars: Vec<char> = bytes.chunks(2).map(|p| if p[0].is_ascii_graphic() { p[0] as char } else { ' ' }).collect();
    chars.chunks(80).map(|row| row.iter().collect::<String>().trim_end().to_string()).collect()
}

#[test]
fn qemu_keel_lines_reach_second_uart_and_vga_screen() {
    let run_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e");
    std::fs::create_dir_all(&run_dir).unwrap();
    let uart1 = run_dir.join("console_ttyS1.log");
    let dump = run_dir.join("console_vga.bin");
    let _ = std::fs::remove_file(&uart1);
    let cfg = VmConfig {
        append: "console=tty0 console=ttyS1,115200".into(),
        extra_args: vec!["-serial".into(), format!("file:{}", uart1.display()), "-vga".into(), "std".into()],
        ..VmConfig::default()
    };
    let mut vm = Vm::boot("console_uarts_vga", &cfg);

    // The second UART carries the same structured lines as the first.
    let ready = wait_in_file(&uart1, "keel: ready ", keel_e2e::BOOT_TIMEOUT);
    assert!(ready.contains("machine_id="), "{ready}");
    wait_in_file(&uart1, "keel: net.ready ", STEP_TIMEOUT);

    // The VGA text console shows keel: lines (the screen holds the last 25 rows; net.ready is among the latest).
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let screen = vga_screen(&mut vm, &dump);
        if screen.iter().any(|l| l.contains("keel:")) {
            break;
        }
        assert!(Instant::now() < deadline, "no keel: line on the VGA screen:\n{}", screen.join("\n"));
        std::thread::sleep(Duration::from_secs(1));
    }
    let _ = std::fs::remove_file(&dump);
}
