//! A request that announces more array elements, string bytes or record headers than it holds
//! fails to decode before anything is allocated for them. The guard lives in the vendored
//! `kafka-protocol` (vendor/kafka-protocol/NOTE-tidelog.md); it must not depend on the broker's
//! MAP_NORESERVE allocator or on `vm.overcommit_memory`, so this binary runs on the plain system
//! allocator, wrapped only to record the largest single allocation each thread makes. A decoder
//! that still reserved for a hostile count would either abort this test (the system allocator
//! refuses ~150 GB) or show up in that record.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use tidelog::api::{decode_request, APIS};
use tidelog::protocol::bodies::decode_any;

struct Recording;

thread_local! {
    // Const-initialised and without a destructor, so the allocator can touch it at any time.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the wrapper only records
// sizes in a thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Recording {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Recording = Recording;

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

/// The largest single allocation `f` made on this thread.
fn largest_allocation(f: impl FnOnce()) -> usize {
    LARGEST.with(|l| l.set(0));
    f();
    LARGEST.with(|l| l.get())
}

/// No decode of a frame of a few dozen bytes has a reason to ask for more than this.
const ALLOCATION_MAX: usize = 64 << 10;

/// Header (v1: key, version, correlation id, null client id; v2 adds empty tagged fields) and
/// body, without the size prefix the frame reader strips.
fn request(api_key: i16, version: i16, header_version: i16, body: &[u8]) -> Bytes {
    let mut f = Vec::new();
    f.extend_from_slice(&api_key.to_be_bytes());
    f.extend_from_slice(&version.to_be_bytes());
    f.extend_from_slice(&7i32.to_be_bytes());
    f.extend_from_slice(&(-1i16).to_be_bytes());
    if header_version >= 2 {
        f.push(0);
    }
    f.extend_from_slice(body);
    Bytes::from(f)
}

#[test]
fn metadata_announcing_2_31_topics_fails_without_allocating_for_them() {
    // Fourteen bytes: Metadata v1 header and a topic count of 2^31 - 1 with no topic behind it.
    // kafka-protocol 0.18 as released reserves 2^31 * size_of::<MetadataRequestTopic>() here.
    let req = decode_request(request(3, 1, 1, &[0x7f, 0xff, 0xff, 0xff])).unwrap();
    assert_eq!(req.body.len(), 4);
    let mut result = None;
    let largest = largest_allocation(|| result = decode_any(&req));
    let err = result
        .take()
        .expect("Metadata has a body type")
        .unwrap_err();
    assert!(err.to_string().contains("exceeds"), "{err}");
    assert!(
        largest < ALLOCATION_MAX,
        "largest allocation {largest} bytes"
    );

    // The same with a compact (varint) count of 2^32 - 2, Metadata v12.
    let req = decode_request(request(3, 12, 2, &[0xff, 0xff, 0xff, 0xff, 0x0f, 0])).unwrap();
    let largest = largest_allocation(|| result = decode_any(&req));
    assert!(result.unwrap().is_err());
    assert!(
        largest < ALLOCATION_MAX,
        "largest allocation {largest} bytes"
    );
}

#[test]
fn every_api_and_version_refuses_hostile_counts_before_allocating() {
    // Counts and lengths at their maxima, for the non-flexible (i32/i16) and the flexible
    // (unsigned varint) encodings, placed after 0..12 zero bytes so that they land on each of
    // the first fields of every body: array counts, string and bytes lengths alike.
    let fills: [&[u8]; 3] = [
        &[0x7f, 0xff, 0xff, 0xff],
        &[0xff, 0xff, 0xff, 0xff, 0x0f],
        &[0x7f, 0xff],
    ];
    let mut decoded = 0;
    for spec in APIS {
        for version in spec.min..=spec.max {
            let header_version = spec.key.request_header_version(version);
            for fill in fills {
                for zeros in 0..12 {
                    let mut body = vec![0u8; zeros];
                    for _ in 0..4 {
                        body.extend_from_slice(fill);
                    }
                    let req =
                        decode_request(request(spec.key as i16, version, header_version, &body))
                            .unwrap_or_else(|e| panic!("{:?} v{version}: header: {e}", spec.key));
                    let mut result = None;
                    let largest = largest_allocation(|| result = decode_any(&req));
                    assert!(result.is_some(), "{:?} has no body type", spec.key);
                    assert!(
                        largest < ALLOCATION_MAX,
                        "{:?} v{version} body {body:02x?}: largest allocation {largest} bytes",
                        spec.key
                    );
                    decoded += 1;
                }
            }
        }
    }
    assert!(decoded > 1000, "only {decoded} requests tried");
}
