//! Hostile: imports an interface the host does not offer, so it cannot be linked.
wit_bindgen::generate!({ path: "wit", world: "alien" });

struct Alien;

impl Guest for Alien {
    fn run() -> String {
        test::alien::evil::steal()
    }
}

export!(Alien);
