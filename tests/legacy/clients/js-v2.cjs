'use strict';
// Legacy test client for the AWS SDK for JavaScript v2 (npm `aws-sdk`).
//
// Usage: node js-v2.cjs NAME SDK_DIR [--sdk-version]
//   SDK_DIR is the installed aws-sdk package directory (run-client passes it).
//
// Credentials come from the SDK's default chain only: `new AWS.STS(...)` is given
// no credentials, so AWS.config resolves them through
// AWS.CredentialProviderChain.defaultProviders (env, shared ini file, then
// ECSCredentials when AWS_CONTAINER_CREDENTIALS_{RELATIVE,FULL}_URI is set, else
// EC2MetadataCredentials). One SigV4-signed STS GetCallerIdentity goes to
// $IRSA_TEST_STS_ENDPOINT. Prints one JSON line; never the secret or the token.

const DEADLINE_MS = 20000;
const name = process.argv[2] || 'js-v2';
const sdkDir = process.argv[3];

// Hide the pod's authorization token: as a value, and as a /v2 path secret.
function redact(text) {
  const token = process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN;
  if (token) text = text.split(token).join('...');
  return text.replace(/\/v2\/credentials\/[^\s"'<>)]+/g, '/v2/credentials/...');
}

function fail(what) {
  const oneLine = redact(String(what).split(/\s+/).join(' '));
  process.stderr.write(name + ': error: ' + oneLine + '\n', () => process.exit(1));
  process.exitCode = 1;
}

setTimeout(() => fail('Timeout: no result within ' + DEADLINE_MS / 1000 + ' s'), DEADLINE_MS).unref();

let AWS;
try {
  AWS = require(sdkDir);
} catch (e) {
  fail('ImportError: ' + (e && e.message));
  return;
}
const sdk = 'aws-sdk@' + AWS.VERSION;
if (process.argv.slice(4).includes('--sdk-version')) {
  console.log(sdk + ' (node ' + process.version + ', ' + require.resolve(sdkDir) + ')');
  return;
}

const endpoint = process.env.IRSA_TEST_STS_ENDPOINT;
if (!endpoint) {
  fail('ConfigError: IRSA_TEST_STS_ENDPOINT is not set');
  return;
}

const sts = new AWS.STS({
  endpoint: endpoint,
  region: 'us-east-1',
  maxRetries: 0,
  httpOptions: { timeout: 5000, connectTimeout: 5000 },
});

sts.getCallerIdentity({}, (err, data) => {
  if (err) {
    // The chain wraps the provider's own error ("Missing credentials in config"
    // around "Could not load credentials from any providers" around the cause).
    let msg = (err.code || err.name || 'Error') + ': ' + err.message;
    for (let e = err.originalError, depth = 0; e && depth < 4; e = e.originalError, depth++) {
      msg += ' <- ' + (e.code ? e.code + ': ' : '') + e.message;
    }
    if (err.code === 'CredentialsError') {
      // The chain does not always keep the cause (an HTTP 401 leaves none): name
      // where the 2017 chain looked, from the same variables it reads.
      const rel = process.env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI;
      const full = process.env.AWS_CONTAINER_CREDENTIALS_FULL_URI;
      msg += ' (tried ' + (rel ? 'ECSCredentials at http://169.254.170.2' + rel
        : full ? 'ECSCredentials at ' + full + (process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN ? ' with' : ' without') + ' Authorization'
        : 'EC2MetadataCredentials at http://169.254.169.254') + ')';
    }
    fail(msg);
    return;
  }
  // The chain stored what it resolved on the client's config.
  const creds = sts.config.credentials;
  const remote = creds instanceof AWS.ECSCredentials || creds instanceof AWS.EC2MetadataCredentials;
  if (!remote) {
    fail('WrongProvider: credentials came from ' + (creds && creds.constructor && creds.constructor.name) +
      ', not from a container or IMDS endpoint');
    return;
  }
  process.stdout.write(JSON.stringify({
    client: name,
    sdk: sdk,
    access_key_id: creds.accessKeyId,
    arn: data.Arn,
  }) + '\n', () => process.exit(0));
});
