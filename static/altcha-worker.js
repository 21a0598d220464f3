/* ALTCHA solver (docs/spam-verdicts.md), run as a Web Worker by altcha.js: finds the number n in
   0..maxnumber with SHA-256(salt + n) == challenge and posts {number} back
   ({number: null} when there is none, or the browser cannot hash). */
'use strict';

// Digests requested at once: awaiting each one alone costs more than the hash.
const BATCH = 256;

function hexToBytes(hex) {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i += 1) {
    bytes[i] = parseInt(hex.substr(i * 2, 2), 16);
  }
  return bytes;
}

function equal(buffer, expected) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length !== expected.length) {
    return false;
  }
  for (let i = 0; i < bytes.length; i += 1) {
    if (bytes[i] !== expected[i]) {
      return false;
    }
  }
  return true;
}

async function solve(task) {
  const encoder = new TextEncoder();
  const expected = hexToBytes(task.challenge);
  const max = Number(task.maxnumber);
  for (let start = 0; start <= max; start += BATCH) {
    const numbers = [];
    for (let n = start; n < start + BATCH && n <= max; n += 1) {
      numbers.push(n);
    }
    const digests = await Promise.all(numbers.map(
      (n) => crypto.subtle.digest('SHA-256', encoder.encode(task.salt + n))));
    const found = digests.findIndex((digest) => equal(digest, expected));
    if (found !== -1) {
      return numbers[found];
    }
  }
  return null;
}

self.onmessage = (event) => {
  const task = event.data || {};
  if (task.algorithm !== 'SHA-256' || typeof task.challenge !== 'string'
      || typeof task.salt !== 'string' || !self.crypto || !crypto.subtle) {
    self.postMessage({ number: null });
    return;
  }
  const began = Date.now();
  solve(task).then(
    (number) => self.postMessage({ number, took: Date.now() - began }),
    () => self.postMessage({ number: null }));
};
