"""Acting helpers shared by agents: plan caches and replanning, plan support, action-chunk execution."""
