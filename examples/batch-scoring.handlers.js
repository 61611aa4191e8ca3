// Task handlers of batch-scoring.asl.json (local engine). Scores are deterministic: (id * 37) mod 100.

module.exports = {
  Score: (application) => ({ ...application, score: (application.applicationId * 37) % 100 }),

  Summarise: (batch) => {
    const review = batch.scored.filter((a) => a.decision === "review").map((a) => a.applicationId);
    return { batchId: batch.batchId, total: batch.scored.length, review };
  },
};
