//! Property-based fuzzing of the services' money rules: which amounts are accepted and how they
//! are kept, and charges racing voids (refunds) against the seed's invariants, on a real SQLite
//! payment database.
//!
//! The amounts property tries 1024 cases, the payments one 64 (`PROPTEST_CASES` overrides
//! both). A failing case is shrunk and written to `properties.proptest-regressions` beside this
//! file: commit it, and it is tried first on every later run.

use std::sync::atomic::{AtomicI64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use rust_decimal::Decimal;
use shop_actors::model::PaymentStatus;
use shop_services::Service;
use shop_services::money::{max_amount, positive_amount};
use shop_services::payment::{CHARGED_AFTER_CANCEL, GatewayConfig, MockGateway, PaymentService};
use shop_services::testing::open_or_explain;

/// `cases` cases (`PROPTEST_CASES` overrides it); failures kept in
/// `properties.proptest-regressions` beside this file.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    }
}

/// Any decimal a client could send: any sign, 0 to 12 places, small and huge mantissas.
fn any_amount() -> impl Strategy<Value = Decimal> {
    let mantissa = prop_oneof![-1_000i64..=1_000, -10_000_000_000_000i64..=10_000_000_000_000, any::<i64>()];
    (mantissa, 0u32..=12).prop_map(|(m, scale)| Decimal::new(m, scale))
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn an_amount_is_accepted_exactly_when_a_decimal_10_2_column_keeps_it(value in any_amount()) {
        let fits = value > Decimal::ZERO && value <= max_amount() && value.normalize().scale() <= 2;
        match positive_amount("price", value) {
            Ok(kept) => {
                prop_assert!(fits, "{} accepted", value);
                prop_assert_eq!(kept, value, "the same amount");
                prop_assert_eq!(kept.scale(), 2, "shown with two places: {}", kept);
            }
            Err(e) => {
                prop_assert!(!fits, "{} refused: {}", value, e);
                prop_assert!(e.to_string().starts_with("price "), "the error names the field: {}", e);
            }
        }
    }
}

/// How one order's payment is asked for and voided.
#[derive(Debug, Clone, Copy)]
enum Race {
    /// Charged only.
    Charge,
    /// Charged, then the order cancelled (a refund if the charge went through).
    ChargeThenVoid,
    /// Cancelled before any charge; the late charge must not take money.
    VoidThenCharge,
    /// Both at once.
    Together,
}

fn race() -> impl Strategy<Value = Race> {
    prop_oneof![
        Just(Race::Charge),
        Just(Race::ChargeThenVoid),
        Just(Race::VoidThenCharge),
        Just(Race::Together)
    ]
}

#[test]
fn charges_racing_voids_end_by_the_seeds_invariants() {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("payment.db").display());
    let store = rt.block_on(open_or_explain(Service::Payment, &url)).payments();
    let next_order = AtomicI64::new(1);
    proptest!(
        config(64),
        |(seed in any::<u64>(), orders in prop::collection::vec((1i64..=9_999_999_999, race()), 1..6))| {
            let gateway = MockGateway::new(&GatewayConfig { success_rate: 0.5, seed: Some(seed), ..GatewayConfig::default() })
                .expect("gateway");
            let payments = PaymentService::new(store.clone(), gateway);
            rt.block_on(async {
                for (cents, race) in &orders {
                    let order_id = next_order.fetch_add(1, Ordering::Relaxed);
                    let amount = Decimal::new(*cents, 2);
                    let charge = || payments.process(order_id, "prop", amount);
                    let void = || payments.void(order_id, "prop", amount, "Order cancelled");
                    let charged = match race {
                        Race::Charge => Some(charge().await.expect("charge")),
                        Race::ChargeThenVoid => {
                            let charged = charge().await.expect("charge");
                            void().await.expect("void");
                            Some(charged)
                        }
                        Race::VoidThenCharge => {
                            void().await.expect("void");
                            let late = charge().await.expect("late charge");
                            prop_assert_eq!(late.status, PaymentStatus::Failed, "a cancelled order is not charged");
                            None
                        }
                        Race::Together => {
                            let (c, v) = tokio::join!(charge(), void());
                            v.expect("void");
                            Some(c.expect("charge"))
                        }
                    };
                    let stored = store.find_by_order(order_id).await.expect("read").expect("one payment per order");
                    // The amount is the order's, to the cent, whatever happened.
                    prop_assert_eq!(stored.amount, amount);
                    prop_assert_eq!(stored.amount.to_string(), format!("{amount:.2}"));
                    match race {
                        // A cancelled order ends on the cancelled side: FAILED, or REFUNDED if
                        // money was taken.
                        Race::ChargeThenVoid | Race::VoidThenCharge | Race::Together => prop_assert!(
                            matches!(stored.status, PaymentStatus::Failed | PaymentStatus::Refunded),
                            "order {} cancelled but its payment is {:?}", order_id, stored.status
                        ),
                        Race::Charge => prop_assert!(matches!(stored.status, PaymentStatus::Success | PaymentStatus::Failed)),
                    }
                    // A refund gives back a charge that went through, once, and says why.
                    if stored.status == PaymentStatus::Refunded {
                        prop_assert!(stored.transaction_id.as_deref().is_some_and(|t| t.starts_with("TXN_")));
                        prop_assert!(stored.refunded_at.is_some());
                        let reason = stored.refund_reason.as_deref().unwrap_or_default();
                        prop_assert!(reason == "Order cancelled" || reason == CHARGED_AFTER_CANCEL, "reason {}", reason);
                    } else {
                        prop_assert_eq!(stored.refunded_at, None);
                    }
                    if let Some(charged) = charged
                        && charged.status == PaymentStatus::Success
                    {
                        prop_assert_eq!(stored.transaction_id, charged.transaction_id, "the refund keeps the transaction");
                    }
                }
                Ok::<(), TestCaseError>(())
            })?;
        }
    );
    // Total Payments = Total Orders: one row per order, none lost or doubled.
    let summaries = rt.block_on(store.summaries()).expect("summaries");
    assert_eq!(summaries.len() as i64, next_order.load(Ordering::Relaxed) - 1);
}
