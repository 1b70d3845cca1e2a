//! The codec against the byte tables of bmc/README.md (address 0x20, so the
//! write address byte is 0x40 and the read address byte 0x41).

use proptest::prelude::*;
use racklet_bmc_proto::*;

fn addr() -> SmbusAddr {
    SmbusAddr::new(0x20).unwrap()
}

fn req_bytes(r: Request<'_>) -> Vec<u8> {
    let mut out = [0u8; MAX_FRAME];
    let n = r.encode(addr(), &mut out).unwrap();
    out[..n].to_vec()
}

fn resp_bytes(cmd: u8, r: Result<&Response, ErrorCode>) -> Vec<u8> {
    let mut out = [0u8; MAX_FRAME];
    let n = encode_response(addr(), cmd, r, &mut out);
    out[..n].to_vec()
}

fn with_pec(mut b: Vec<u8>) -> Vec<u8> {
    b.push(pec::pec(&b));
    b
}

/// Every row of the README command table: (request, its block data, response, its payload).
fn table() -> Vec<(Request<'static>, Vec<u8>, Response, Vec<u8>)> {
    let plan = BootPlan {
        slot: Slot::B,
        tries_left: 2,
        forced_by_button: true,
        fallback: false,
        confirmed: true,
        boot_count: 0x0102,
    };
    let info = SlotInfo {
        priority: 15,
        tries: 3,
        successful: true,
        versions: [SecurityVersion(5), SecurityVersion(1)],
    };
    vec![
        (
            Request::GetBootPlan,
            vec![],
            Response::BootPlan(plan),
            vec![0x01, 0x02, 0x05, 0x02, 0x01, 0x00, 0x00],
        ),
        (
            Request::ConfirmBoot { slot: Slot::B },
            vec![0x01],
            Response::Done,
            vec![],
        ),
        (
            Request::GetRollbackMin {
                kind: ImageKind::Stage1,
            },
            vec![0x01],
            Response::RollbackMin(SecurityVersion(7)),
            vec![7, 0, 0, 0],
        ),
        (
            Request::RaiseRollbackMin {
                kind: ImageKind::BootImage,
                version: SecurityVersion(0x0A0B),
            },
            vec![0x00, 0x0B, 0x0A, 0, 0],
            Response::RollbackMin(SecurityVersion(0x0A0B)),
            vec![0x0B, 0x0A, 0, 0],
        ),
        (
            Request::GetTime,
            vec![],
            Response::Time(Clock {
                time: UnixTime(0x6553_F100),
                set: true,
            }),
            vec![0x00, 0xF1, 0x53, 0x65, 0, 0, 0, 0, 0x01],
        ),
        (
            Request::SetTime {
                time: UnixTime(0x6553_F100),
            },
            vec![0x00, 0xF1, 0x53, 0x65, 0, 0, 0, 0],
            Response::Done,
            vec![],
        ),
        (
            Request::GetPowerStatus,
            vec![],
            Response::PowerStatus(PowerStatus {
                state: PowerState::Fault,
                fault: FaultCode::PowerGoodLost,
                shutdown_requested: false,
            }),
            vec![0x07, 0x02, 0x00],
        ),
        (
            Request::GetPowerMetrics,
            vec![],
            Response::PowerMetrics(PowerMetrics {
                millivolts: 5100,
                milliamps: 1200,
                energy_mj: 3_600_000,
            }),
            vec![
                0xEC, 0x13, 0, 0, 0xB0, 0x04, 0, 0, 0x80, 0xEE, 0x36, 0, 0, 0, 0, 0,
            ],
        ),
        (
            Request::GetButtonState,
            vec![],
            Response::ButtonState(ButtonState {
                pressed: false,
                last_press: Press::Long,
                force_b_pending: true,
            }),
            vec![0x00, 0x02, 0x01],
        ),
        (
            Request::ReportInstalled {
                slot: Slot::B,
                kind: ImageKind::BootImage,
                version: SecurityVersion(5),
            },
            vec![0x01, 0x00, 5, 0, 0, 0],
            Response::Done,
            vec![],
        ),
        (
            Request::GetSlotInfo { slot: Slot::A },
            vec![0x00],
            Response::SlotInfo(info),
            vec![15, 3, 1, 5, 0, 0, 0, 1, 0, 0, 0],
        ),
        (
            Request::Reset {
                kind: ResetType::PowerCycle,
            },
            vec![0x04],
            Response::Done,
            vec![],
        ),
        (
            Request::FwBegin {
                version: 2,
                total_len: 0x0400,
            },
            vec![2, 0, 0, 0, 0x00, 0x04, 0, 0],
            Response::Done,
            vec![],
        ),
        (
            Request::FwChunk {
                offset: 28,
                data: &[0xAA, 0xBB],
            },
            vec![28, 0, 0, 0, 0xAA, 0xBB],
            Response::Done,
            vec![],
        ),
        (
            Request::FwFinish,
            vec![],
            Response::FwInfo(FwInfo {
                version: 2,
                bank: 1,
            }),
            vec![2, 0, 0, 0, 1],
        ),
        (
            Request::GetFwInfo,
            vec![],
            Response::FwInfo(FwInfo {
                version: 1,
                bank: 0,
            }),
            vec![1, 0, 0, 0, 0],
        ),
        (
            Request::GetAuthStatus,
            vec![],
            Response::AuthStatus(AuthStatus {
                key_provisioned: true,
                sealed: true,
                session: true,
                epoch: Epoch(0x0102),
                last_counter: 3,
            }),
            vec![0x07, 0x02, 0x01, 0, 0, 3, 0, 0, 0],
        ),
        (
            Request::ProvisionKey {
                key: UnitKey::from_bytes(key_bytes()),
            },
            key_bytes().to_vec(),
            Response::Done,
            vec![],
        ),
        (
            Request::GetSessionKey { half: 1 },
            vec![0x01],
            Response::SessionKeyHalf(KeyHalf([0xC3; 16])),
            vec![0xC3; 16],
        ),
        (Request::Seal, vec![], Response::Done, vec![]),
        (
            Request::ReportRefusal {
                reason: RefusalReason::NoTrustedTime,
            },
            vec![0x05],
            Response::Done,
            vec![],
        ),
        (
            Request::GetRefusal,
            vec![],
            Response::Refusals(Refusals {
                count: 3,
                last: Some(LastRefusal {
                    reason: RefusalReason::TamperedTarget,
                    epoch: Epoch(12),
                }),
            }),
            vec![0x03, 0x00, 0x00, 0x00, 0x03, 0x0C, 0x00, 0x00, 0x00],
        ),
        (
            Request::RaiseTufFloor {
                role: TufRole::Snapshot,
                version: 0x0102_0304,
            },
            vec![0x02, 0x04, 0x03, 0x02, 0x01],
            Response::TufFloors(TufFloors([1, 2, 0x0102_0304, 4])),
            vec![1, 0, 0, 0, 2, 0, 0, 0, 4, 3, 2, 1, 4, 0, 0, 0],
        ),
        (
            Request::GetTufFloors,
            vec![],
            Response::TufFloors(TufFloors::default()),
            vec![0; 16],
        ),
    ]
}

/// The README's example unit key: bytes 00 01 … 1F.
fn key_bytes() -> [u8; 32] {
    core::array::from_fn(|i| i as u8)
}

/// The README's example session: that key, epoch 5.
fn session_key() -> SessionKey {
    UnitKey::from_bytes(key_bytes()).session(Epoch(5))
}

#[test]
fn command_codes_match_the_table() {
    let codes: Vec<u8> = table().iter().map(|(r, ..)| r.command()).collect();
    assert_eq!(
        codes,
        vec![
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x20, 0x21,
            0x22, 0x23, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x12, 0x13, 0x14,
        ]
    );
}

#[test]
fn every_request_and_response_matches_its_byte_table_row() {
    let authenticated = [0x02, 0x04, 0x06, 0x0A, 0x11, 0x13];
    for (req, data, resp, payload) in table() {
        let cmd = req.command();
        assert_eq!(
            req.is_authenticated(),
            authenticated.contains(&cmd),
            "{req:?}"
        );
        let mut expect = vec![0x40, cmd];
        if req.is_authenticated() {
            // data ‖ counter ‖ tag, and the count covers them.
            let t = auth::tag(&session_key(), addr(), cmd, &data, Epoch(5), 9);
            expect.push(data.len() as u8 + 20);
            expect.extend_from_slice(&data);
            expect.extend_from_slice(&[9, 0, 0, 0]);
            expect.extend_from_slice(&t);
            let expect = with_pec(expect);
            let mut out = [0u8; MAX_FRAME];
            let n =
                encode_authenticated(addr(), &req, &session_key(), Epoch(5), 9, &mut out).unwrap();
            assert_eq!(out[..n].to_vec(), expect, "{req:?}");
            let inc = decode_request(addr(), &expect);
            assert_eq!(inc.request, Ok(req));
            assert_eq!(inc.auth.map(|t| t.counter), Some(9));
            assert!(inc.verify(addr(), &session_key(), Epoch(5)));
            // The same request without counter and tag is refused.
            assert_eq!(
                decode_request(addr(), &req_bytes(req)).request,
                Err(Error::Unauthenticated(cmd))
            );
        } else {
            expect.push(data.len() as u8);
            expect.extend_from_slice(&data);
            let expect = with_pec(expect);
            assert_eq!(req_bytes(req), expect, "{req:?}");
            let inc = decode_request(addr(), &expect);
            assert_eq!(inc.request, Ok(req));
            assert_eq!(inc.auth, None);
        }

        let mut r = vec![0x41, payload.len() as u8 + 1, 0x00];
        r.extend_from_slice(&payload);
        let p = pec::Pec::new()
            .update(0x40)
            .update(cmd)
            .update_slice(&r)
            .value();
        r.push(p);
        assert_eq!(resp_bytes(cmd, Ok(&resp)), r, "{resp:?}");
        assert_eq!(req.decode_response(addr(), &r), Ok(resp));
    }
}

#[test]
fn worked_example_frames_from_the_readme() {
    // GetBootPlan to 0x20, and ConfirmBoot{A}: PECs computed by hand.
    assert_eq!(
        req_bytes(Request::GetBootPlan),
        vec![0x40, 0x01, 0x00, 0x93]
    );
    assert_eq!(
        req_bytes(Request::ConfirmBoot { slot: Slot::A }),
        vec![0x40, 0x02, 0x01, 0x00, 0x58]
    );
    // The BadPec answer to ConfirmBoot.
    assert_eq!(
        resp_bytes(0x02, Err(ErrorCode::BadPec)),
        with_pec_resp(0x02, vec![0x41, 0x01, 0x01])
    );
}

#[test]
fn worked_authenticated_example_from_the_readme() {
    // Session key and tag computed independently (Python's hmac module).
    let mut out = [0u8; MAX_FRAME];
    let ks = session_key();
    assert_eq!(
        [ks.half(0).0, ks.half(1).0].concat(),
        hex("16078060f45999f47b537e3888e155be38ce3571ce835468a9c024ff617d174e")
    );
    let n = encode_authenticated(
        addr(),
        &Request::ConfirmBoot { slot: Slot::A },
        &ks,
        Epoch(5),
        1,
        &mut out,
    )
    .unwrap();
    assert_eq!(
        out[..n].to_vec(),
        hex("40021500010000006d271db8182ffd8c114f6759d1ecc92b46")
    );
    // The same frame in epoch 6 does not verify: no replay across epochs.
    let inc = decode_request(addr(), &out[..n]);
    assert!(inc.verify(addr(), &ks, Epoch(5)));
    assert!(!inc.verify(addr(), &ks, Epoch(6)));
    let ks6 = UnitKey::from_bytes(key_bytes()).session(Epoch(6));
    assert!(!inc.verify(addr(), &ks6, Epoch(6)));
}

#[test]
fn refusal_reasons_and_the_worked_refusal_frames_from_the_readme() {
    // The reason bytes: bootd's RefusalReason, in its order, from 0.
    let names: Vec<(u8, &str)> = RefusalReason::ALL
        .iter()
        .map(|r| (r.to_byte(), r.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            (0, "rollback"),
            (1, "expired"),
            (2, "signature"),
            (3, "tampered_target"),
            (4, "older_than_installed"),
            (5, "no_trusted_time"),
            (6, "unreachable"),
            (7, "install_deadline"),
            (8, "other"),
        ]
    );
    for b in 9..=255u8 {
        // With a (wrong) counter and tag: the payload is checked first.
        let mut frame = vec![0x40, 0x11, 21, b];
        frame.extend_from_slice(&[0; 20]);
        let frame = with_pec(frame);
        assert_eq!(
            decode_request(addr(), &frame).request,
            Err(Error::OutOfRange {
                field: "refusal reason",
                value: b.into()
            })
        );
    }
    // ReportRefusal { rollback }, key 00…1F, epoch 5, counter 2 (Python's hmac).
    let mut out = [0u8; MAX_FRAME];
    let req = Request::ReportRefusal {
        reason: RefusalReason::Rollback,
    };
    let n = encode_authenticated(addr(), &req, &session_key(), Epoch(5), 2, &mut out).unwrap();
    assert_eq!(
        out[..n].to_vec(),
        hex("4011150002000000afdfba8d2400182169a193cdd679673333")
    );
    // GetRefusal and its answer: 3 refusals, the last rollback in epoch 12.
    assert_eq!(req_bytes(Request::GetRefusal), hex("401200fb"));
    let answer = hex("410a0003000000000c00000062");
    let got = Request::GetRefusal
        .decode_response(addr(), &answer)
        .unwrap();
    let Response::Refusals(r) = got else {
        panic!("{got:?}")
    };
    assert_eq!(r.count, 3);
    assert_eq!(r.boots_ago(15), Some(3));
    // None recorded: all zero; a count of 0 with anything else is refused.
    let none = Response::Refusals(Refusals::default());
    let zero = resp_bytes(0x12, Ok(&none));
    assert_eq!(zero, with_pec_resp(0x12, hex("410a00000000000000000000")));
    assert_eq!(Request::GetRefusal.decode_response(addr(), &zero), Ok(none));
    for bad in ["410a00000000000100000000", "410a00000000000001000000"] {
        let f = with_pec_resp(0x12, hex(bad));
        assert!(matches!(
            Request::GetRefusal.decode_response(addr(), &f),
            Err(Error::OutOfRange { .. })
        ));
    }
}

#[test]
fn tuf_roles_and_the_worked_floor_frames_from_the_readme() {
    let names: Vec<(u8, &str)> = TufRole::ALL
        .iter()
        .map(|r| (r.to_byte(), r.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            (0, "root"),
            (1, "timestamp"),
            (2, "snapshot"),
            (3, "targets")
        ]
    );
    // A role byte out of range is refused before the trailer is looked at.
    let mut frame = vec![0x40, 0x13, 25, 4, 1, 0, 0, 0];
    frame.extend_from_slice(&[0; 20]);
    assert_eq!(
        decode_request(addr(), &with_pec(frame)).request,
        Err(Error::OutOfRange {
            field: "TUF role",
            value: 4
        })
    );
    // RaiseTufFloor { timestamp, 41 }, key 00…1F, epoch 5, counter 3 (Python's hmac).
    let mut out = [0u8; MAX_FRAME];
    let req = Request::RaiseTufFloor {
        role: TufRole::Timestamp,
        version: 41,
    };
    let n = encode_authenticated(addr(), &req, &session_key(), Epoch(5), 3, &mut out).unwrap();
    assert_eq!(
        out[..n].to_vec(),
        hex("40131901290000000300000018f9d33d1e0ead031b65c56c0656bd451d")
    );
    // Without the trailer it is refused like every state change.
    assert_eq!(
        decode_request(addr(), &with_pec(hex("4013050129000000"))).request,
        Err(Error::Unauthenticated(0x13))
    );
    // GetTufFloors and its answer: root 1, timestamp 41, snapshot 7, targets 7.
    assert_eq!(req_bytes(Request::GetTufFloors), hex("40140085"));
    let answer = hex("4111000100000029000000070000000700000083");
    assert_eq!(
        Request::GetTufFloors.decode_response(addr(), &answer),
        Ok(Response::TufFloors(TufFloors([1, 41, 7, 7])))
    );
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn with_pec_resp(cmd: u8, mut r: Vec<u8>) -> Vec<u8> {
    let p = pec::Pec::new()
        .update(0x40)
        .update(cmd)
        .update_slice(&r)
        .value();
    r.push(p);
    r
}

#[test]
fn error_codes_match_the_table() {
    let codes = [
        (ErrorCode::BadPec, 0x01),
        (ErrorCode::BadLength, 0x02),
        (ErrorCode::UnknownCommand, 0x03),
        (ErrorCode::OutOfRange, 0x04),
        (ErrorCode::CounterLower, 0x05),
        (ErrorCode::TimeBackwards, 0x06),
        (ErrorCode::NotConfirmed, 0x07),
        (ErrorCode::BadState, 0x08),
        (ErrorCode::BadSignature, 0x09),
        (ErrorCode::OlderFirmware, 0x0A),
        (ErrorCode::Storage, 0x0B),
        (ErrorCode::Unauthenticated, 0x0C),
        (ErrorCode::Replayed, 0x0D),
        (ErrorCode::Sealed, 0x0E),
        (ErrorCode::NoKey, 0x0F),
        (ErrorCode::KeyPresent, 0x10),
    ];
    for (c, b) in codes {
        assert_eq!(c.to_byte(), b);
        assert_eq!(ErrorCode::from_byte(b), c);
    }
}

#[test]
fn client_rejects_a_response_with_a_wrong_pec_or_for_another_command() {
    let r = resp_bytes(
        0x05,
        Ok(&Response::Time(Clock {
            time: UnixTime(5),
            set: false,
        })),
    );
    let mut bad = r.clone();
    *bad.last_mut().unwrap() ^= 0xFF;
    assert!(matches!(
        Request::GetTime.decode_response(addr(), &bad),
        Err(Error::Pec { .. })
    ));
    // The PEC binds the answer to its command: a GetTime answer does not
    // decode as the answer to GetRollbackMin even though lengths differ anyway.
    assert!(matches!(
        decode_response(addr(), 0x03, &r),
        Err(Error::Pec { .. })
    ));
}

#[test]
fn stream_reader_splits_back_to_back_frames_and_resyncs_after_junk() {
    let a = req_bytes(Request::GetTime);
    let b = req_bytes(Request::ConfirmBoot { slot: Slot::B });
    let mut stream = a.clone();
    stream.extend_from_slice(&[0x40, 0x01, 0xFF]); // count 255: impossible
    stream.extend_from_slice(&b);
    let mut rd = StreamReader::requests();
    let mut frames = vec![];
    let mut errors = vec![];
    for byte in stream {
        match rd.push(byte) {
            Some(Ok(f)) => frames.push(f.to_vec()),
            Some(Err(e)) => errors.push(e),
            None => {}
        }
    }
    assert_eq!(frames, vec![a, b]);
    assert_eq!(errors, vec![(0x01, Error::BlockTooLong(255))]);
}

proptest! {
    #[test]
    fn fuzz_request_frame(data in prop::collection::vec(any::<u8>(), 0..48)) {
        fuzz::request_frame(&data);
    }

    #[test]
    fn fuzz_request_frame_with_valid_pec(mut data in prop::collection::vec(any::<u8>(), 3..36)) {
        // Most random frames fail the PEC; this drives the decoder behind it.
        data[0] = 0x40;
        data[2] = (data.len() - 3) as u8;
        data.push(pec::pec(&data));
        fuzz::request_frame(&data);
    }

    #[test]
    fn fuzz_response_frame(mut data in prop::collection::vec(any::<u8>(), 2..40)) {
        data[1] = 0x41;
        if data.len() > 3 { data[2] = (data.len() - 4) as u8; }
        let p = pec::Pec::new().update(0x40).update(data[0]).update_slice(&data[1..]).value();
        data.push(p);
        fuzz::response_frame(&data);
    }

    #[test]
    fn fuzz_stream(data in prop::collection::vec(any::<u8>(), 0..300)) {
        fuzz::stream(&data);
    }

    #[test]
    fn fuzz_authenticated_frame(data in prop::collection::vec(any::<u8>(), 0..64)) {
        fuzz::authenticated_frame(&data);
    }
}
