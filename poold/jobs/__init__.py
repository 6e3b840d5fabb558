"""Block templates -> Stratum jobs: coinbase building, merkle branches, the job registry."""
