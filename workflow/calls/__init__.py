"""Two-way 揭榜 calls (双向揭榜, measure 5): calls, bids, award with milestones, acceptance, the subsidy."""
