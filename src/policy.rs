//! IAM trust-policy evaluation (placeholder).
