//! The operator's tools: `shop load` (drives a running system and measures it) and `shop audit`
//! (checks the invariants across the service databases).

pub mod audit;
pub mod load;
