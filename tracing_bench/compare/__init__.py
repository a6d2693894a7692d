"""Compare checkpoints: leaderboard of lm-eval results, CI regression gate, MI phase turns, tested findings."""
