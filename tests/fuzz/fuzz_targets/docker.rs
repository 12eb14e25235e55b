//! The Docker translation: a JSON array of `GET /containers/{id}/json` answers → what drover
//! keeps of each → one decision per container (labels, state, health, network, port) → the
//! provider's fragment → a routing snapshot.
#![no_main]

use std::collections::HashMap;

use bollard::models::ContainerInspectResponse;
use drover_providers::docker::translate::{self, Context, Observed};
use drover_providers::docker::DockerConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(answers) = serde_json::from_slice::<Vec<ContainerInspectResponse>>(data) else {
        return;
    };
    let observed: Vec<Observed> = answers.into_iter().filter_map(|a| Observed::from_inspect(a).ok()).collect();
    let all: HashMap<String, Observed> = observed.iter().map(|o| (o.id.clone(), o.clone())).collect();
    let common = DockerConfig::default().check().expect("the default Docker settings are valid");
    let ctx = Context {
        common: &common,
        provider: "docker",
        me: None,
        all: &all,
    };
    let decided = observed.iter().map(|o| decide(o, &ctx)).collect();
    let (config, _reports) = translate::assemble(decided);
    drover_fuzz::route("docker", &config);
});

fn decide(o: &Observed, ctx: &Context) -> translate::Decided {
    let labels = translate::parse_labels(&o.labels, &ctx.common.label_prefix);
    translate::decide(o, &labels, ctx)
}
