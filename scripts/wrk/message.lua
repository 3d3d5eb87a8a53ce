-- The benchmark's message: ~300 bytes of JSON, the size the targets are stated in (an order
-- event with a customer and two lines, and two attributes). `n` numbers it inside a batch.
function message(n)
  return string.format(
    '{"body": {"order_id": "ord_%08d", "customer": {"id": 48213, "email": "ada@example.com", '
      .. '"tier": "gold"}, "items": [{"sku": "A-100", "qty": 2, "price": 19.99}, '
      .. '{"sku": "B-220", "qty": 1, "price": 5.5}], "total": 45.48, "currency": "EUR", '
      .. '"created_at": "2026-12-06T23:00:00Z"}, "attributes": {"source": "bench", '
      .. '"type": "order.created"}}',
    n
  )
end
