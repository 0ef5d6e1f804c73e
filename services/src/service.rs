//! The five services by name.

/// The five services, each with its own database and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Auth,
    Product,
    Cart,
    Payment,
    Order,
}

impl Service {
    pub const ALL: [Service; 5] =
        [Service::Auth, Service::Product, Service::Cart, Service::Payment, Service::Order];

    pub fn name(self) -> &'static str {
        match self {
            Service::Auth => "auth",
            Service::Product => "product",
            Service::Cart => "cart",
            Service::Payment => "payment",
            Service::Order => "order",
        }
    }

    /// Its position in [`Service::ALL`]: an index into per-service tables.
    pub fn index(self) -> usize {
        self as usize
    }
}
