#!/usr/bin/env python3
"""boto3 conformance checks for `irsa-proxy sts-emulator`.

Usage: emulator_boto3.py ENDPOINT CASES_JSON

CASES_JSON holds the role ARN, tokens for each case (good, bad_signature,
wrong_audience, expired, not_yet_valid, other_namespace) and the emulator's
credential TTL in seconds. Run by tests/emulator.rs against the real binary;
prints one line per check and "N passed, M failed", exits 1 on any failure.
Needs boto3 (`pip install boto3`).
"""

import json
import sys
import time

try:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import ClientError
except ImportError as e:  # pragma: no cover - reported to the Rust test
    print(f"boto3 is missing ({e}); run `pip install boto3`", file=sys.stderr)
    sys.exit(2)

ENDPOINT = sys.argv[1]
CASES = json.load(open(sys.argv[2]))
ROLE = CASES["role_arn"]
NO_RETRIES = {"max_attempts": 1, "mode": "standard"}

results = []


def check(name, fn):
    try:
        fn()
        results.append((name, None))
        print(f"PASS {name}")
    except Exception as e:  # noqa: BLE001 - any failure is a failed check
        results.append((name, e))
        print(f"FAIL {name}: {type(e).__name__}: {e}")


def unsigned_client():
    return boto3.client(
        "sts",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, retries=NO_RETRIES),
    )


def signed_client(access_key, secret, token):
    return boto3.client(
        "sts",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=Config(retries=NO_RETRIES),
    )


def assume(token, session="boto3-session", **kw):
    return unsigned_client().assume_role_with_web_identity(
        RoleArn=ROLE, RoleSessionName=session, WebIdentityToken=token, **kw
    )


def expect_error(code, fn):
    try:
        fn()
    except ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, f"expected {code}, got {got}: {e}"
        return e
    raise AssertionError(f"expected {code}, the call succeeded")


issued = {}


def success():
    out = assume(CASES["good"], DurationSeconds=900)
    c = out["Credentials"]
    assert c["AccessKeyId"].startswith("ASIA") and len(c["AccessKeyId"]) == 20, c["AccessKeyId"]
    assert len(c["SecretAccessKey"]) == 40
    assert c["SessionToken"]
    assert out["SubjectFromWebIdentityToken"] == "system:serviceaccount:demo:app"
    arn = out["AssumedRoleUser"]["Arn"]
    assert arn == "arn:aws:sts::111122223333:assumed-role/demo-role/boto3-session", arn
    assert out["Audience"] == "sts.amazonaws.com"
    assert out["Provider"].startswith("arn:aws:iam::111122223333:oidc-provider/")
    assert out["ResponseMetadata"]["RequestId"]
    issued.update(c)


def caller_identity():
    me = signed_client(
        issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"]
    ).get_caller_identity()
    assert me["Arn"] == "arn:aws:sts::111122223333:assumed-role/demo-role/boto3-session", me
    assert me["Account"] == "111122223333"
    assert me["UserId"].startswith("AROA") and me["UserId"].endswith(":boto3-session")


def tampered_secret():
    secret = issued["SecretAccessKey"]
    tampered = ("B" if secret[0] == "A" else "A") + secret[1:]
    expect_error(
        "SignatureDoesNotMatch",
        lambda: signed_client(
            issued["AccessKeyId"], tampered, issued["SessionToken"]
        ).get_caller_identity(),
    )


def unknown_key():
    expect_error(
        "InvalidClientTokenId",
        lambda: signed_client(
            "ASIAAAAAAAAAAAAAAAAA", issued["SecretAccessKey"], issued["SessionToken"]
        ).get_caller_identity(),
    )


def after_expiry():
    ttl = CASES["credential_ttl_seconds"]
    time.sleep(ttl + 1)
    expect_error(
        "ExpiredToken",
        lambda: signed_client(
            issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"]
        ).get_caller_identity(),
    )


check("assume_role_with_web_identity succeeds", success)
check("get_caller_identity answers the role", caller_identity)
check("tampered secret -> SignatureDoesNotMatch", tampered_secret)
check("unknown key -> InvalidClientTokenId", unknown_key)
check(
    "bad signature -> InvalidIdentityToken",
    lambda: expect_error("InvalidIdentityToken", lambda: assume(CASES["bad_signature"])),
)
check(
    "wrong audience -> InvalidIdentityToken",
    lambda: expect_error("InvalidIdentityToken", lambda: assume(CASES["wrong_audience"])),
)
check(
    "expired token -> ExpiredTokenException",
    lambda: expect_error("ExpiredTokenException", lambda: assume(CASES["expired"])),
)
check(
    "nbf in the future -> InvalidIdentityToken",
    lambda: expect_error("InvalidIdentityToken", lambda: assume(CASES["not_yet_valid"])),
)
check(
    "trust policy -> AccessDenied",
    lambda: expect_error("AccessDenied", lambda: assume(CASES["other_namespace"])),
)
check(
    "bad session name -> ValidationError",
    lambda: expect_error(
        "ValidationError", lambda: assume(CASES["good"], session="no spaces allowed")
    ),
)
check(
    "duration out of range -> ValidationError",
    lambda: expect_error(
        "ValidationError", lambda: assume(CASES["good"], DurationSeconds=43201)
    ),
)
check("credentials after expiry -> ExpiredToken", after_expiry)

failed = [name for name, err in results if err is not None]
print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
