//! Money rules shared by the services: exact decimals with at most two places.

use rust_decimal::Decimal;

use crate::error::{ServiceError, ServiceResult};

pub use shop_actors::model::max_amount;

/// `amount` with exactly two places, as the REST contract shows money and the stores keep it.
pub fn two_places(amount: Decimal) -> Decimal {
    let mut a = amount;
    a.rescale(2);
    a
}

/// Checks that `value` is a positive amount with at most two decimal places that fits
/// `DECIMAL(10,2)`, and returns it with exactly two places.
pub fn positive_amount(field: &str, value: Decimal) -> ServiceResult<Decimal> {
    if value.normalize().scale() > 2 {
        return Err(ServiceError::Invalid(format!(
            "{field} must have at most two decimal places (got {value})"
        )));
    }
    if value <= Decimal::ZERO || value > max_amount() {
        return Err(ServiceError::Invalid(format!(
            "{field} must be greater than 0 and at most {}",
            max_amount()
        )));
    }
    Ok(two_places(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal")
    }

    #[test]
    fn two_places_at_most() {
        assert_eq!(positive_amount("price", d("10")).expect("ok").to_string(), "10.00");
        assert_eq!(positive_amount("price", d("10.500")).expect("ok").to_string(), "10.50");
        assert!(positive_amount("price", d("10.555")).is_err());
        assert!(positive_amount("price", d("0")).is_err());
        assert!(positive_amount("price", d("-1.00")).is_err());
        assert!(positive_amount("price", d("100000000.00")).is_err());
        assert!(positive_amount("price", d("99999999.99")).is_ok());
    }
}
