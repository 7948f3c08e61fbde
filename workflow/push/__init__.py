"""Targeted push (定向推送): subscriptions, push batches of leads, the recipients' inbox and coded responses."""
