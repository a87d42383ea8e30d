//! Long chains: a typed chain written as one expression, and a long chain
//! built in a loop through `.boxed()`.
use pipeline_core::prelude::*;

#[step]
fn s0(x: i64) -> i64 {
    x + 1
}

#[step]
fn s1(x: i64) -> i64 {
    x + 1
}

#[step]
fn s2(x: i64) -> i64 {
    x + 1
}

#[step]
fn s3(x: i64) -> i64 {
    x + 1
}

#[step]
fn s4(x: i64) -> i64 {
    x + 1
}

#[step]
fn s5(x: i64) -> i64 {
    x + 1
}

#[step]
fn s6(x: i64) -> i64 {
    x + 1
}

#[step]
fn s7(x: i64) -> i64 {
    x + 1
}

#[step]
fn s8(x: i64) -> i64 {
    x + 1
}

#[step]
fn s9(x: i64) -> i64 {
    x + 1
}

#[step]
fn s10(x: i64) -> i64 {
    x + 1
}

#[step]
fn s11(x: i64) -> i64 {
    x + 1
}

#[step]
fn s12(x: i64) -> i64 {
    x + 1
}

#[step]
fn s13(x: i64) -> i64 {
    x + 1
}

#[step]
fn s14(x: i64) -> i64 {
    x + 1
}

#[step]
fn s15(x: i64) -> i64 {
    x + 1
}

#[step]
fn s16(x: i64) -> i64 {
    x + 1
}

#[step]
fn s17(x: i64) -> i64 {
    x + 1
}

#[step]
fn s18(x: i64) -> i64 {
    x + 1
}

#[step]
fn s19(x: i64) -> i64 {
    x + 1
}

#[step]
fn s20(x: i64) -> i64 {
    x + 1
}

#[step]
fn s21(x: i64) -> i64 {
    x + 1
}

#[step]
fn s22(x: i64) -> i64 {
    x + 1
}

#[step]
fn s23(x: i64) -> i64 {
    x + 1
}

#[step]
fn s24(x: i64) -> i64 {
    x + 1
}

#[step]
fn s25(x: i64) -> i64 {
    x + 1
}

#[step]
fn s26(x: i64) -> i64 {
    x + 1
}

#[step]
fn s27(x: i64) -> i64 {
    x + 1
}

#[step]
fn s28(x: i64) -> i64 {
    x + 1
}

#[step]
fn s29(x: i64) -> i64 {
    x + 1
}

#[step]
fn s30(x: i64) -> i64 {
    x + 1
}

#[step]
fn s31(x: i64) -> i64 {
    x + 1
}

#[step]
fn s32(x: i64) -> i64 {
    x + 1
}

#[step]
fn s33(x: i64) -> i64 {
    x + 1
}

#[step]
fn s34(x: i64) -> i64 {
    x + 1
}

#[step]
fn s35(x: i64) -> i64 {
    x + 1
}

#[step]
fn s36(x: i64) -> i64 {
    x + 1
}

#[step]
fn s37(x: i64) -> i64 {
    x + 1
}

#[step]
fn s38(x: i64) -> i64 {
    x + 1
}

#[step]
fn s39(x: i64) -> i64 {
    x + 1
}

#[step]
fn s40(x: i64) -> i64 {
    x + 1
}

#[step]
fn s41(x: i64) -> i64 {
    x + 1
}

#[step]
fn s42(x: i64) -> i64 {
    x + 1
}

#[step]
fn s43(x: i64) -> i64 {
    x + 1
}

#[step]
fn s44(x: i64) -> i64 {
    x + 1
}

#[step]
fn s45(x: i64) -> i64 {
    x + 1
}

#[step]
fn s46(x: i64) -> i64 {
    x + 1
}

#[step]
fn s47(x: i64) -> i64 {
    x + 1
}

#[step]
fn s48(x: i64) -> i64 {
    x + 1
}

#[step]
fn s49(x: i64) -> i64 {
    x + 1
}

#[step]
fn s50(x: i64) -> i64 {
    x + 1
}

#[step]
fn s51(x: i64) -> i64 {
    x + 1
}

#[step]
fn s52(x: i64) -> i64 {
    x + 1
}

#[step]
fn s53(x: i64) -> i64 {
    x + 1
}

#[step]
fn s54(x: i64) -> i64 {
    x + 1
}

#[step]
fn s55(x: i64) -> i64 {
    x + 1
}

#[step]
fn s56(x: i64) -> i64 {
    x + 1
}

#[step]
fn s57(x: i64) -> i64 {
    x + 1
}

#[step]
fn s58(x: i64) -> i64 {
    x + 1
}

#[step]
fn s59(x: i64) -> i64 {
    x + 1
}

#[step]
fn s60(x: i64) -> i64 {
    x + 1
}

#[step]
fn s61(x: i64) -> i64 {
    x + 1
}

#[step]
fn s62(x: i64) -> i64 {
    x + 1
}

#[step]
fn s63(x: i64) -> i64 {
    x + 1
}

#[test]
fn typed_chain_of_64_steps() {
    let p = s63(s62(s61(s60(s59(s58(s57(s56(s55(s54(s53(s52(s51(
        s50(s49(s48(s47(s46(s45(s44(s43(s42(s41(s40(s39(s38(
            s37(s36(s35(s34(s33(s32(s31(s30(s29(s28(s27(s26(s25(
                s24(s23(s22(s21(s20(s19(s18(s17(s16(s15(s14(s13(s12(
                    s11(s10(s9(s8(s7(s6(s5(s4(s3(s2(s1(s0(
                        Input::<i64>::new(),
                    )))))))))))),
                ))))))))))))),
            ))))))))))))),
        ))))))))))))),
    )))))))))))))
    .deploy()
    .unwrap();
    assert_eq!(p.call(0).unwrap(), 64);
    assert_eq!(p.graph().steps().count(), 64);
}

#[test]
fn boxed_chain_of_500_steps() {
    // A call polls the chain's nested futures, one level per step: in a
    // debug build with every feature that is about 4-5 KiB of stack per
    // level (a fraction of it in release), so 500 levels need more than a
    // test thread's default 2 MiB. Run it where a program's main thread
    // would (8 MiB).
    let call = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(|| {
            let mut node = Input::<i64>::new().boxed();
            for _ in 0..500 {
                node = s0(node).boxed();
            }
            let p = node.deploy().unwrap();
            p.call(1)
        })
        .unwrap();
    assert_eq!(call.join().unwrap().unwrap(), 501);
}
