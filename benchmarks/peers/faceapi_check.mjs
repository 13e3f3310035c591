// face-api.js's own age/gender net on raw RGB crops, for checking the Python port (benchmarks/peers/faceapi.py).
//
// It loads @vladmandic/face-api's Node build that takes the pure-JavaScript @tensorflow/tfjs (face-api.node-wasm.js;
// the default Node build needs @tensorflow/tfjs-node's native binary), switches tfjs to its CPU backend, loads the
// weights with the library's own loader (AgeGenderNet.loadFromDisk) and calls predictAgeAndGender on each crop given
// as an int32 [H, W, 3] tensor, the library's tensor input path (NetInput.toBatchTensor: pad to square, resize
// to 112, then TinyXception's normalisation).
//
//   NODE_PATH=TFJS/node_modules node faceapi_check.mjs FACEAPI_DIR CROPS_DIR
//
// TFJS: a folder where `npm install @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0` was run (the
// build requires both; only the CPU backend is used). CROPS_DIR holds crops.json ([{name, height, width, file}],
// each file the crop's raw RGB bytes, row-major); the results go to CROPS_DIR/faceapi.json as
// [{name, age, p_male}]. faceapi.py's `check` command writes the crops, runs this script and compares.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const [faceapiDir, cropsDir] = process.argv.slice(2);
if (!faceapiDir || !cropsDir) {
  console.error('usage: NODE_PATH=TFJS/node_modules node faceapi_check.mjs FACEAPI_DIR CROPS_DIR');
  process.exit(2);
}
const faceapi = require(path.resolve(faceapiDir, 'dist', 'face-api.node-wasm.js'));
const { tf } = faceapi;
await tf.setBackend('cpu');
await tf.ready();

const net = faceapi.nets.ageGenderNet;
await net.loadFromDisk(path.resolve(faceapiDir, 'model'));

const crops = JSON.parse(fs.readFileSync(path.join(cropsDir, 'crops.json'), 'utf8'));
const results = [];
for (const c of crops) {
  const bytes = fs.readFileSync(path.join(cropsDir, c.file));
  const input = tf.tensor3d(Int32Array.from(bytes), [c.height, c.width, 3], 'int32');
  const pred = await net.predictAgeAndGender(input);
  input.dispose();
  const pMale = pred.gender === 'male' ? pred.genderProbability : 1 - pred.genderProbability;
  results.push({ name: c.name, age: pred.age, p_male: pMale });
}
fs.writeFileSync(path.join(cropsDir, 'faceapi.json'), JSON.stringify(results));
console.log(`face-api ${faceapi.version}, tfjs ${tf.version_core} (${tf.getBackend()} backend): ${results.length} crops`);
