//! GUID partition tables as a disk holds them (keel-disklabel's `gpt::parse`, as the init runs it on the first
//! sectors of every disk it probes, whatever wrote them): never panics. And the writer's output reads back as
//! what was written: `build_parts` → `parse` gives a valid table with the same partitions.
#![no_main]

use keel_disklabel::gpt::{self, Guid, NewPart, KEEL_TYPE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gpt::parse(data);

    // Encode ∘ decode: sector size, disk size, partition extent and name from the input.
    let Some((params, rest)) = data.split_first_chunk::<17>() else { return };
    let sector = if params[0] & 1 == 0 { 512 } else { 4096 };
    let disk_bytes = u64::from_le_bytes(params[1..9].try_into().unwrap()) % (1 << 44);
    let cut = u64::from_le_bytes(params[9..17].try_into().unwrap());
    let Some((first, last)) = gpt::usable(sector, disk_bytes) else { return };
    let name: String = String::from_utf8_lossy(rest).chars().filter(|c| *c != '\0').take(36).collect();
    if name.encode_utf16().count() > 36 {
        return;
    }
    let split = first + cut % (last - first + 1);
    let parts = [
        NewPart { first_lba: first, last_lba: split, type_guid: KEEL_TYPE, guid: Guid([1; 16]), name: name.clone() },
        NewPart { first_lba: split, last_lba: last, type_guid: Guid([7; 16]), guid: Guid([2; 16]), name },
    ];
    let img = gpt::build_parts(sector, disk_bytes, Guid([3; 16]), &parts).expect("a layout inside the usable area");
    let table = gpt::parse(&img.head).expect("the table just built parses");
    assert!(table.valid, "the table just built has a bad CRC");
    assert_eq!(table.sector, sector);
    assert_eq!(table.disk_guid, Guid([3; 16]));
    assert_eq!(table.entries.len(), 2);
    for (i, (e, p)) in table.entries.iter().zip(&parts).enumerate() {
        assert_eq!(e.number, i as u32 + 1);
        assert_eq!((e.first_lba, e.last_lba, e.type_guid, e.guid), (p.first_lba, p.last_lba, p.type_guid, p.guid));
        assert_eq!(e.name, p.name);
    }
});
