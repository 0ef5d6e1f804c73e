//! The clock as the services store it.

use chrono::{DateTime, SubsecRound, Utc};

/// The current time as stored: microseconds, which both backends keep exactly.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
