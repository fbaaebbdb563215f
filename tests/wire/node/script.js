// The same script of operations as tests/wire/runner.py's Python client scripts, through
// the official Elasticsearch Node client: node script.js URL INDEX COMPRESS(0|1).
// Prints a JSON array of {name, status, body}.
"use strict";
const { Client, errors } = require("@elastic/elasticsearch");

async function main() {
  const [url, index, compress] = process.argv.slice(2);
  const client = new Client({ node: url, compression: compress === "1", maxRetries: 0, requestTimeout: 30000 });
  const q = { multi_match: { query: "password reset", fields: ["title^2", "body"] } };
  const steps = [];
  const call = async (name, fn) => {
    try {
      const resp = await fn();
      steps.push({ name, status: resp.statusCode, body: resp.body, rerank: resp.headers["x-rerank"] || null });
    } catch (err) {
      if (err instanceof errors.ResponseError) {
        steps.push({ name, status: err.meta.statusCode, body: err.meta.body, rerank: err.meta.headers["x-rerank"] || null });
      } else {
        steps.push({ name, status: 0, body: { error: err.name } });
      }
    }
  };
  const meta = { meta: true };
  await call("create", () => client.indices.create({ index, mappings: {
    properties: { title: { type: "text" }, body: { type: "text" }, category: { type: "keyword" }, year: { type: "integer" } },
  } }, meta));
  const topics = ["password reset", "library card", "printer queue", "wifi access", "room booking", "harry potter"];
  const operations = [];
  for (let i = 0; i < 20; i++) {
    operations.push({ index: { _index: index, _id: String(i) } });
    operations.push({
      title: `${topics[i % 6]} guide ${i}`,
      body: `How to handle ${topics[i % 6]} with ${topics[(i + 2) % 6]}, step ${i}`,
      category: ["it", "library", "facilities"][i % 3],
      year: 1990 + i,
    });
  }
  await call("bulk", () => client.bulk({ refresh: "true", operations }, meta));
  await call("search", () => client.search({ index, query: q, size: 10 }, meta));
  await call("search-aggs", () => client.search({ index, query: q, size: 10, aggs: { cats: { terms: { field: "category" } } } }, meta));
  await call("search-source-false", () => client.search({ index, query: q, _source: false }, meta));
  await call("search-filter-path", () => client.search({ index, query: q, filter_path: "hits.hits._id,hits.total" }, meta));
  await call("search-highlight", () => client.search({ index, query: q, highlight: { fields: { body: {} } } }, meta));
  await call("msearch", () => client.msearch({ searches: [{ index }, { query: q, size: 10 }, { index }, { size: 0 }] }, meta));
  await call("count", () => client.count({ index, query: q }, meta));
  await call("get", () => client.get({ index, id: "3" }, meta));
  await call("update", () => client.update({ index, id: "3", doc: { year: 1 }, refresh: "true" }, meta));
  await call("missing", () => client.search({ index: index + "-missing", query: q }, meta));
  await call("bad-query", () => client.search({ index, query: { nope: {} } }, meta));
  await call("delete-index", () => client.indices.delete({ index }, meta));
  await client.close();
  process.stdout.write(JSON.stringify(steps));
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err));
  process.exit(1);
});
