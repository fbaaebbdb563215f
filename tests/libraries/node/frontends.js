// Elastic Search UI's Elasticsearch connector and Searchkit's API client, each building its
// own requests as a browser app's would, against one URL (ES itself, or the sidecar):
// node frontends.js URL INDEX. Prints one JSON object: what each library handed its app,
// and every request it sent with the X-Rerank header of its answer (null from ES itself).
"use strict";
const SearchUIConnector = require("@elastic/search-ui-elasticsearch-connector").default;
const Searchkit = require("@searchkit/api").default;

const requests = [];
const realFetch = globalThis.fetch;
// Both libraries call the global fetch: wrapped, it records what went out and what came back.
globalThis.fetch = async (url, options) => {
  const resp = await realFetch(url, options);
  requests.push({
    url: String(url),
    body: options && options.body ? String(options.body) : null,
    rerank: resp.headers.get("x-rerank"),
  });
  return resp;
};

// Words most articles share ("help desk"), so that every page of three has hits.
const QUERY = "renew a library card at the help desk";

async function searchUI(url, index) {
  const connector = new SearchUIConnector({ host: url, index });
  const queryConfig = {
    search_fields: { title: { weight: 3 }, body: {} },
    result_fields: { title: { raw: {} }, body: { raw: {} }, category: { raw: {} } },
    facets: { category: { type: "value" } },
  };
  const pages = [];
  for (const current of [1, 2, 3]) {
    const state = { searchTerm: QUERY, current, resultsPerPage: 7, filters: [], sortList: [] };
    const answer = await connector.onSearch(state, queryConfig);
    pages.push({
      total: answer.totalResults,
      facets: answer.facets,
      results: answer.results.map((r) => ({ id: r.id.raw, rawHit: r._meta.rawHit })),
    });
  }
  const autocomplete = await connector.onAutocomplete(
    { searchTerm: "libr" },
    {
      results: {
        resultsPerPage: 5,
        search_fields: { title_sayt: {}, "title_sayt._2gram": {}, "title_sayt._3gram": {} },
        result_fields: { title: { raw: {} } },
      },
      suggestions: { types: { documents: { fields: ["suggest"] } }, size: 4 },
    },
  );
  return {
    pages,
    autocomplete: {
      results: autocomplete.autocompletedResults.map((r) => ({ id: r.id.raw, rawHit: r._meta.rawHit })),
      suggestions: autocomplete.autocompletedSuggestions,
    },
  };
}

async function searchkit(url, index) {
  const client = Searchkit({
    connection: { host: url },
    search_settings: {
      search_attributes: [{ field: "title", weight: 3 }, "body"],
      result_attributes: ["title", "body", "category"],
      highlight_attributes: ["title"],
      facet_attributes: [{ attribute: "category", field: "category", type: "string" }],
    },
  });
  const pages = [];
  for (const page of [0, 1, 2]) {
    const answer = await client.handleRequest([
      { indexName: index, params: { query: QUERY, page, hitsPerPage: 7, facets: ["category"] } },
    ]);
    const result = answer.results[0];
    pages.push({ nbHits: result.nbHits, facets: result.facets, hits: result.hits });
  }
  return { pages };
}

async function main() {
  const [url, index] = process.argv.slice(2);
  const out = { searchUI: await searchUI(url, index), searchkit: await searchkit(url, index), requests };
  process.stdout.write(JSON.stringify(out));
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err));
  process.exit(1);
});
