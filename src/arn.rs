//! A role ARN, the one noun the sidecar and the tools both need: `serve`
//! validates `--role-arn` with it and answers with its parts, the STS emulator
//! parses the `RoleArn` parameter with it. `IamArn` is the IAM ARN grammar
//! it shares with the managed policy ARNs of a session policy.

use std::fmt;

/// A role ARN, split into the parts the endpoints need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleArn {
    /// The ARN as given.
    pub arn: String,
    /// `aws`, `aws-cn`, `aws-us-gov`, ...: used for the instance-profile ARN.
    pub partition: String,
    /// The 12-digit account: the ECS body's `AccountId`.
    pub account: String,
    /// The role's name (the last path segment): the IMDS credentials path.
    pub name: String,
}

/// The form of a role ARN.
const FORM: &str = "arn:<partition>:iam::<12-digit account>:role/<optional/path/>name";

/// Which part of a role ARN is wrong. Its `Display` is the form expected, a
/// phrase that fits after "expected", naming the part when one is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RoleArnError {
    /// Not `arn:<partition>:iam::<account>:role/...` at all.
    #[error("{}", FORM)]
    Form,
    #[error("{} (the partition is aws, aws-cn, aws-us-gov, ...)", FORM)]
    Partition,
    #[error("{} (the account is 12 digits)", FORM)]
    Account,
    #[error("{} (the name is 1-64 of [A-Za-z0-9+=,.@_-])", FORM)]
    Name,
}

impl RoleArn {
    /// Parses `arn:<partition>:iam::<12 digits>:role/<path/>name`.
    pub fn parse(s: &str) -> Result<RoleArn, RoleArnError> {
        let parts = IamArn::split(s, "role", 64, false).map_err(|part| match part {
            IamArnPart::Form => RoleArnError::Form,
            IamArnPart::Partition => RoleArnError::Partition,
            IamArnPart::Account => RoleArnError::Account,
            IamArnPart::Name => RoleArnError::Name,
        })?;
        if parts.resource_len > 576 {
            return Err(RoleArnError::Name);
        }
        Ok(RoleArn {
            arn: s.to_string(),
            partition: parts.partition.to_string(),
            account: parts.account.to_string(),
            name: parts.name.to_string(),
        })
    }
}

/// The parts of an IAM ARN, `arn:<partition>:iam::<account>:<kind>/<path/>name`:
/// a role's, or a managed policy's (`sidecar::sts::policy`).
pub(crate) struct IamArn<'a> {
    pub partition: &'a str,
    pub account: &'a str,
    pub name: &'a str,
    /// The length of `<kind>/<path/>name` without the kind.
    pub resource_len: usize,
}

/// The first part of an IAM ARN that IAM would refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IamArnPart {
    Form,
    Partition,
    Account,
    Name,
}

impl<'a> IamArn<'a> {
    /// Splits `s` as an IAM ARN of `kind` (`role`, `policy`), checking each part
    /// as IAM does: a partition of `[a-z0-9-]`, a 12-digit account (or `aws`
    /// when `aws_account`, for AWS managed policies), a name of 1 to `max_name`
    /// of `[A-Za-z0-9+=,.@_-]` after a path of printable ASCII.
    pub(crate) fn split(
        s: &'a str,
        kind: &str,
        max_name: usize,
        aws_account: bool,
    ) -> Result<IamArn<'a>, IamArnPart> {
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        if parts.len() != 6 || parts[0] != "arn" || parts[2] != "iam" || !parts[3].is_empty() {
            return Err(IamArnPart::Form);
        }
        let partition = parts[1];
        if partition.is_empty()
            || !partition
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(IamArnPart::Partition);
        }
        let account = parts[4];
        let account_ok = (aws_account && account == "aws")
            || account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
        if !account_ok {
            return Err(IamArnPart::Account);
        }
        let Some(resource) = parts[5]
            .strip_prefix(kind)
            .and_then(|r| r.strip_prefix('/'))
        else {
            return Err(IamArnPart::Form);
        };
        let name = resource.rsplit('/').next().unwrap_or_default();
        let name_ok = (1..=max_name).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
        let path_ok = resource[..resource.len() - name.len()]
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b));
        if !name_ok || !path_ok {
            return Err(IamArnPart::Name);
        }
        Ok(IamArn {
            partition,
            account,
            name,
            resource_len: resource.len(),
        })
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_should_parse_with_paths_and_partitions() {
        let a = RoleArn::parse("arn:aws:iam::123456789012:role/app").unwrap();
        assert_eq!(
            (a.account.as_str(), a.name.as_str()),
            ("123456789012", "app")
        );
        let a = RoleArn::parse("arn:aws-cn:iam::123456789012:role/team/x/app-role").unwrap();
        assert_eq!(
            (a.partition.as_str(), a.name.as_str()),
            ("aws-cn", "app-role")
        );
        for bad in [
            "",
            "arn:aws:iam::12345678901:role/x",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:sts::123456789012:role/x",
            "arn:aws:iam:us-east-1:123456789012:role/x",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/bad name",
            "arn:AWS:iam::123456789012:role/x",
        ] {
            assert!(RoleArn::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn errors_should_name_the_part_at_fault() {
        for (bad, want, names) in [
            ("arn:aws:iam::123456789012:user/x", RoleArnError::Form, ""),
            (
                "arn:AWS:iam::123456789012:role/x",
                RoleArnError::Partition,
                "(the partition is",
            ),
            (
                "arn:aws:iam::12345678901:role/x",
                RoleArnError::Account,
                "(the account is 12 digits)",
            ),
            (
                "arn:aws:iam::123456789012:role/bad name",
                RoleArnError::Name,
                "(the name is 1-64",
            ),
        ] {
            assert_eq!(RoleArn::parse(bad), Err(want), "{bad}");
            let line = want.to_string();
            assert!(line.starts_with(FORM) && line.contains(names), "{line}");
        }
    }
}
