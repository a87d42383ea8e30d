//! A step written by `macro_rules!` with its input type from a `$t:ty`
//! fragment: the type arrives in an invisible group and is judged as what
//! it holds, one error as when written by hand.
use pipeline_core::prelude::*;

macro_rules! shout_step {
    ($name:ident, $t:ty) => {
        #[step]
        fn $name(s: $t) -> String {
            s.to_uppercase()
        }
    };
}

shout_step!(shout, &str);

fn main() {
    let _ = shout(Input::<String>::new()).deploy();
}
