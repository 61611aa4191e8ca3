// Task handlers of order-fulfilment.asl.json for the local engine, keyed by state name.
// A handler gets the state's effective input and a context {stateName, resource, iterationPath,
// contextObject}; it returns the task's result, or throws an Error whose `name` is the ASL error.

const outages = new Map();

function fail(name, message) {
  const error = new Error(message);
  error.name = name;
  return error;
}

module.exports = {
  // Fails with ServiceUnavailable `simulate.validationOutages` times per order (Retry shows up as attempts).
  "Validate order": (order) => {
    if (!order.orderId || !Array.isArray(order.items) || order.items.length === 0) {
      throw fail("InvalidOrder", "an order needs an orderId and at least one item");
    }
    const seen = outages.get(order.orderId) ?? 0;
    if (seen < (order.simulate?.validationOutages ?? 0)) {
      outages.set(order.orderId, seen + 1);
      throw fail("ServiceUnavailable", "the validation service is briefly unavailable");
    }
    return { ...order, validated: true };
  },

  // Card numbers ending in 0002 are declined (Catch → "Payment declined").
  "Charge card": (order) => {
    if (String(order.payment?.card ?? "").endsWith("0002")) throw fail("PaymentDeclined", "card declined by issuer");
    const amount = order.items.reduce((sum, item) => sum + 10 * item.quantity, 0);
    return { chargeId: `ch-${order.orderId}`, amount, currency: "EUR" };
  },

  "Reserve stock": (item) => ({ ...item, reservation: `rsv-${item.orderId}-${item.sku}` }),

  "Create invoice": (order) => ({ invoiceId: `inv-${order.orderId}`, lines: order.items.length }),

  "Email confirmation": (invoice) => ({ ...invoice, emailed: true }),

  Ship: (order) => ({ trackingId: `trk-${order.orderId}`, carrier: "DHL" }),
};
