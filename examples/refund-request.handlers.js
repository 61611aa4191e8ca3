// Task handlers of refund-request.asl.json (local engine).

module.exports = {
  "Look up order": (request) => ({ orderId: request.orderId, daysSinceDelivery: request.deliveredDaysAgo, amount: 25 }),
  "Issue refund": (order) => ({ orderId: order.orderId, refundId: `rf-${order.orderId}`, amount: order.amount }),
};
