// A smoke test of a running store: the home page answers.
const base = process.env.BASE_URL || "http://localhost:3000";
const res = await fetch(base);
if (!res.ok) throw new Error(`home page answered ${res.status}`);
console.log("home page ok");
