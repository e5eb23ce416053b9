// Read by the build script: the same switch a real Next.js app needs.
export default { output: "standalone" };
