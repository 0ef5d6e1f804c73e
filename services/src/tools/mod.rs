//! Tools that read the services' databases from outside: the audit of the cross-database
//! invariants (`shop audit`) and the commit ceiling (`shop load --scenario commit`).

pub mod audit;
pub mod ceiling;
