// Resolve credentials with the AWS SDK for JavaScript v3 and print what was obtained.
//
// Run by tests/clients.rs in a clean environment pointed at the proxy.
//   node js_credentials.mjs chain   the default Node provider chain (fromNodeProviderChain)
//   node js_credentials.mjs imds    the instance-metadata provider (fromInstanceMetadata)
// Prints two lines on stdout: the access key id, then the expiration as Unix
// seconds. Nothing secret is printed. Exits 1 when no credentials were resolved.

import { fromInstanceMetadata, fromNodeProviderChain } from "@aws-sdk/credential-providers";

const mode = process.argv[2];
let provider;
if (mode === "chain") {
  provider = fromNodeProviderChain();
} else if (mode === "imds") {
  provider = fromInstanceMetadata();
} else {
  console.error(`usage: js_credentials.mjs chain|imds (got ${mode})`);
  process.exit(2);
}

try {
  const credentials = await provider();
  console.log(credentials.accessKeyId);
  const expiration = credentials.expiration;
  console.log(expiration ? Math.floor(expiration.getTime() / 1000) : "none");
} catch (err) {
  // The error's name and message only: SDK errors do not carry the secret.
  console.error(`${err.name}: ${err.message}`);
  process.exit(1);
}
