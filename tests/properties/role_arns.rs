//! Properties of role ARNs: parsing never panics, valid ones parse into their parts, mangled ones are refused.

use irsa_proxy::sidecar::config::RoleArn;
use proptest::prelude::*;

use crate::config;

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn role_arn_parsing_should_never_panic(s in ".{0,120}") {
        if let Ok(a) = RoleArn::parse(&s) {
            // Whatever parses has the shape the endpoints rely on.
            prop_assert_eq!(a.account.len(), 12);
            prop_assert!(!a.name.is_empty() && a.name.len() <= 64);
            prop_assert!(s.ends_with(&a.name));
        }
    }

    #[test]
    fn valid_role_arns_should_parse_into_their_parts(
        partition in "aws(-[a-z]{2,6})?",
        account in "[0-9]{12}",
        path in "(/[A-Za-z0-9_]{1,10}){0,3}",
        name in "[A-Za-z0-9+=,.@_-]{1,64}",
    ) {
        let arn = format!("arn:{partition}:iam::{account}:role{path}/{name}");
        let a = RoleArn::parse(&arn).unwrap();
        prop_assert_eq!(a.partition, partition);
        prop_assert_eq!(a.account, account);
        prop_assert_eq!(a.name, name);
        prop_assert_eq!(a.arn, arn);
    }

    #[test]
    fn mangled_role_arns_should_be_refused(
        account in "[0-9]{1,11}|[0-9]{13,14}|[0-9]{11}[a-z]",
        name in "[A-Za-z0-9]{1,10}",
    ) {
        let arn = format!("arn:aws:iam::{account}:role/{name}");
        prop_assert!(RoleArn::parse(&arn).is_err());
    }
}
