// An app for `irsa-proxy dev` as a test bench, with the AWS SDK for JavaScript v3:
//   node bench_app.mjs SECONDS
// The clients' default credential chain (the container endpoint dev exports) and
// real work in a loop: S3 PutObject (a string body, and a stream body, which the
// SDK sends aws-chunked with a CRC32 trailer) and GetObject on the emulator's
// bucket, and STS GetCallerIdentity. Any failed call is printed and makes the
// exit 1. Nothing secret is printed.

import { Readable } from "node:stream";
import { GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { GetCallerIdentityCommand, STSClient } from "@aws-sdk/client-sts";

const seconds = Number(process.argv[2] ?? "30");
const bucket = process.env.IRSA_PROXY_DEV_BUCKET;
const s3 = new S3Client({});
const sts = new STSClient({});
const keys = [];
let calls = 0;
let failures = 0;
const deadline = Date.now() + seconds * 1000;
while (Date.now() < deadline) {
  calls += 1;
  const body = `call ${calls} at ${Date.now()}`;
  const key = `js/${calls % 5}.txt`;
  try {
    if (calls % 2 === 0) {
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    } else {
      await s3.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: Readable.from([Buffer.from(body)]),
          ContentLength: Buffer.byteLength(body),
        }),
      );
    }
    const got = await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body.transformToString();
    if (got !== body) throw new Error(`read back ${got}, wrote ${body}`);
    await sts.send(new GetCallerIdentityCommand({}));
    const { accessKeyId } = await s3.config.credentials();
    if (keys.at(-1) !== accessKeyId) {
      keys.push(accessKeyId);
      console.log(`call ${calls}: now signing with ${accessKeyId}`);
    }
  } catch (err) {
    failures += 1;
    console.log(`call ${calls} failed: ${err.name}: ${err.message}`);
  }
  await new Promise((r) => setTimeout(r, 500));
}
console.log(`${calls - failures} passed, ${failures} failed; ${new Set(keys).size} distinct access keys`);
process.exit(failures === 0 ? 0 : 1);
