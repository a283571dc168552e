// Parallel enroll / identify / delete over gRPC for a bounded time: no crash, no deleted face
// ever returned, and the gallery's counts match what the clients were told.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "tests/server/harness.h"

namespace faceid::testing {
namespace {

constexpr auto kRunFor = std::chrono::milliseconds(2500);
constexpr int kEnrollers = 3;
constexpr int kIdentifiers = 3;
constexpr int kDeleters = 2;

struct Ledger {
  std::mutex mutex;
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> live;  // person, face ids
  std::set<std::int64_t> deleted;
  std::int64_t live_faces = 0;
};

TEST(ServerConcurrencyTest, ParallelEnrollIdentifyDeleteStayConsistent) {
  TestServer server;
  ServiceOptions options;
  options.max_in_flight = 64;
  ServerOptions threads;
  threads.threads = 64;
  server.Start(options, threads);
  Ledger ledger;
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0}, violations{0}, identifies{0}, enrolls{0}, deletes{0};
  std::vector<std::thread> workers;

  for (int t = 0; t < kEnrollers; ++t) {
    workers.emplace_back([&, t] {
      auto stub = server.Stub();
      for (int i = 0; !stop; ++i) {
        const std::string id = "w" + std::to_string(t) + "_" + std::to_string(i);
        const int colour = (t * 17 + i) % 64;
        grpc::ClientContext context;
        v1::EnrollResponse response;
        auto request = EnrollOf(id, {MakeFacesImage({PersonColour(colour)}, i % 5),
                                     MakeFacesImage({PersonColour(colour)}, i % 5 + 1)});
        const grpc::Status status = stub->Enroll(&context, request, &response);
        if (!status.ok()) {
          ++errors;
          continue;
        }
        std::vector<std::int64_t> ids;
        for (const auto& face : response.faces()) ids.push_back(face.face_id());
        std::lock_guard<std::mutex> lock(ledger.mutex);
        ledger.live_faces += static_cast<std::int64_t>(ids.size());
        ledger.live.emplace_back(id, std::move(ids));
        ++enrolls;
      }
    });
  }
  for (int t = 0; t < kDeleters; ++t) {
    workers.emplace_back([&, t] {
      auto stub = server.Stub();
      std::mt19937 rng(t);
      while (!stop) {
        std::pair<std::string, std::vector<std::int64_t>> victim;
        {
          std::lock_guard<std::mutex> lock(ledger.mutex);
          if (ledger.live.size() >= 4) {
            const std::size_t pick = rng() % ledger.live.size();
            victim = ledger.live[pick];
            ledger.live.erase(ledger.live.begin() + static_cast<long>(pick));
          }
        }
        if (victim.first.empty()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
          continue;
        }
        grpc::ClientContext context;
        v1::DeletePersonRequest request;
        request.set_external_id(victim.first);
        v1::DeletePersonResponse response;
        if (!stub->DeletePerson(&context, request, &response).ok() ||
            response.faces_deleted() != static_cast<int>(victim.second.size())) {
          ++errors;
          continue;
        }
        std::lock_guard<std::mutex> lock(ledger.mutex);
        ledger.deleted.insert(victim.second.begin(), victim.second.end());
        ledger.live_faces -= static_cast<std::int64_t>(victim.second.size());
        ++deletes;
      }
    });
  }
  for (int t = 0; t < kIdentifiers; ++t) {
    workers.emplace_back([&, t] {
      auto stub = server.Stub();
      for (int i = 0; !stop; ++i) {
        std::set<std::int64_t> deleted_before;
        {
          std::lock_guard<std::mutex> lock(ledger.mutex);
          deleted_before = ledger.deleted;
        }
        grpc::ClientContext context;
        auto request = IdentifyOf(MakeFacesImage({PersonColour((t + i) % 64)}, 6));
        request.set_top_k(20);
        v1::IdentifyResponse response;
        if (!stub->Identify(&context, request, &response).ok()) {
          ++errors;
          continue;
        }
        ++identifies;
        for (const auto& face : response.results(0).faces()) {
          for (const auto& candidate : face.candidates()) {
            if (deleted_before.count(candidate.face_id())) ++violations;
          }
        }
      }
    });
  }
  std::this_thread::sleep_for(kRunFor);
  stop = true;
  for (auto& worker : workers) worker.join();

  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(violations.load(), 0);
  EXPECT_GT(enrolls.load(), 0);
  EXPECT_GT(deletes.load(), 0);
  EXPECT_GT(identifies.load(), 0);
  auto stub = server.Stub();
  grpc::ClientContext context;
  v1::InfoResponse info;
  ASSERT_TRUE(stub->Info(&context, {}, &info).ok());
  EXPECT_EQ(info.total_faces(), ledger.live_faces);
  grpc::ClientContext list_context;
  v1::ListPeopleResponse people;
  ASSERT_TRUE(stub->ListPeople(&list_context, {}, &people).ok());
  EXPECT_EQ(people.total_people(), static_cast<std::int64_t>(ledger.live.size()));

  // The index agrees with the store: every live person is still found with its own face.
  for (std::size_t i = 0; i < ledger.live.size(); i += 7) {
    grpc::ClientContext get_context;
    v1::GetPersonRequest get;
    get.set_external_id(ledger.live[i].first);
    v1::Person person;
    ASSERT_TRUE(stub->GetPerson(&get_context, get, &person).ok());
    EXPECT_EQ(person.face_count(), 2);
  }
}

}  // namespace
}  // namespace faceid::testing
