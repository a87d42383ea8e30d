//! The same step defined twice in one module, both used: one error.
use pipeline_core::prelude::*;

mod steps {
    use pipeline_core::prelude::*;

    #[step(mode = "tasks")]
    pub fn shout(s: String) -> String {
        s.to_uppercase()
    }

    #[step(mode = "tasks")]
    pub fn shout(s: String) -> String {
        format!("{s}!")
    }
}

fn main() {
    let _ = steps::shout(Input::<String>::new()).deploy();
}
