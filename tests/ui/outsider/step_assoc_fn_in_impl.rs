use pipeline_core::prelude::*;

struct Text;

impl Text {
    #[step]
    fn shout(s: String) -> String {
        s.to_uppercase()
    }
}

fn main() {
    let _ = Text::shout(Input::<String>::new()).deploy();
}
