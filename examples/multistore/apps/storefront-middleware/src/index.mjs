// The middleware: answers /config with the store's composed settings.
import { createServer } from "node:http";
import { readFileSync } from "node:fs";

const config = JSON.parse(readFileSync(new URL("./config.json", import.meta.url), "utf8"));
const port = Number(process.env.PORT || 4000);

createServer((req, res) => {
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify({ service: "middleware", ...config }));
}).listen(port, () => console.log(`middleware listening on ${port}`));
