"""Training of SAM-architecture models with SAM's simulated interactive sessions
(Kirillov et al., 2023, §3 and App. A), on cached frozen-backbone features."""
