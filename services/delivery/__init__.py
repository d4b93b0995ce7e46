"""Delivery: alerts matched with subscriptions, sent as signed webhooks and e-mail, once, through a delivery log."""
